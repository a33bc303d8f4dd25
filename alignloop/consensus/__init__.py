"""Consensus: aggregate several labelers' rankings, measure agreement, score the labelers.

``rankings`` holds the array form every statistic works on, ``aggregate`` the consensus
methods, ``agreement`` Kendall's W / Krippendorff's alpha / pairwise agreement,
``groups`` the groups of labelers with consistent but different tastes, ``quality``
each labeler's agreement with the others and the outlier rule, ``report``
the project-level entry point reading the feedback store, ``chart`` the PNG.
"""
