"""The simulated labelers' ranking policy (Plackett–Luce with a temperature)."""

from __future__ import annotations

import math

import numpy as np

from alignloop.task_types import simulated_orders, simulated_ranking, simulated_ranks, simulated_thumbs, simulated_tiers


def test_without_noise_the_ranking_follows_the_scores():
    rng = np.random.default_rng(0)
    assert simulated_ranking([0.1, 0.9, -0.5, 0.3], 0.0, rng) == [1, 3, 0, 2]


def test_misreader_ranks_by_the_opposite_of_the_scores():
    rng = np.random.default_rng(0)
    assert simulated_ranking([0.1, 0.9, -0.5, 0.3], 0.0, rng, misreader=True) == [2, 0, 3, 1]


def test_noise_samples_the_plackett_luce_distribution():
    # P(item 0 first) = exp(s0/T) / Σ exp(s/T) with temperature T = noise.
    scores = np.array([1.0, 0.0, -0.5])
    noise = 0.5
    rng = np.random.default_rng(1)
    orders = simulated_orders(np.tile(scores, (40_000, 1)), noise, rng)
    expected = np.exp(scores / noise) / np.exp(scores / noise).sum()
    observed = np.bincount(orders[:, 0], minlength=3) / len(orders)
    np.testing.assert_allclose(observed, expected, atol=0.01)
    # second place given first: the same rule over the remaining items
    rest = orders[orders[:, 0] == 0]
    p_second = math.exp(0.0 / noise) / (math.exp(0.0 / noise) + math.exp(-0.5 / noise))
    assert abs(np.mean(rest[:, 1] == 1) - p_second) < 0.02


def test_where_ties_are_allowed_equal_scores_are_placed_level_and_move_together():
    scores = [0.5, -1.0, 0.5, 0.2, -1.0]
    assert simulated_tiers(scores, 0.0, np.random.default_rng(0), allow_ties=True) == [[0, 2], [3], [1, 4]]
    assert simulated_tiers(scores, 0.0, np.random.default_rng(0), misreader=True, allow_ties=True) == [
        [1, 4],
        [3],
        [0, 2],
    ]
    # with noise a tier still moves as one: its members always share a rank
    ranks = simulated_ranks(np.tile(scores, (2000, 1)), 0.5, np.random.default_rng(1), allow_ties=True)
    assert (ranks[:, 0] == ranks[:, 2]).all() and (ranks[:, 1] == ranks[:, 4]).all()
    assert (ranks[:, 0] == 1.5).mean() > 0.4 and (ranks[:, 0] == 4.5).any()  # but it is ranked with noise
    # mid-ranks of a ranking of five: each row's ranks sum to 1 + ... + 5
    np.testing.assert_allclose(ranks.sum(axis=1), 15.0)


def test_ties_change_nothing_where_no_two_scores_are_equal():
    scores = np.random.default_rng(2).normal(size=(300, 6))
    strict = simulated_ranks(scores, 0.3, np.random.default_rng(5))
    tied = simulated_ranks(scores, 0.3, np.random.default_rng(5), allow_ties=True)
    np.testing.assert_array_equal(strict, tied)
    # and without them equal scores are still ordered, one above the other
    assert sorted(simulated_ranks(np.zeros((1, 4)), 0.3, np.random.default_rng(5))[0]) == [1, 2, 3, 4]


def test_thumbs_go_up_for_above_average_completions_without_noise():
    rng = np.random.default_rng(0)
    assert simulated_thumbs([0.9, -0.2, 0.5, -0.8], 0.0, rng) == [1, -1, 1, -1]
    assert simulated_thumbs([0.9, -0.2, 0.5, -0.8], 0.0, rng, misreader=True) == [-1, 1, -1, 1]


# ---- end to end through the labeling server ---------------------------------------------------

WORDS = ["wonderful", "lovely", "fine", "okay", "dull", "bad", "awful", "terrible", "great", "sad"]


def _sentiment_project(project_dir, n_prompts: int):
    from consensus.builders import add_prompt

    from alignloop.project import open_project

    rng = np.random.default_rng(7)
    handle = open_project(project_dir)
    try:
        for i in range(n_prompts):
            texts = [f"It was {' and '.join(rng.choice(WORDS, size=2, replace=False))}." for _ in range(4)]
            add_prompt(handle, f"How was day {i}?", texts)
    finally:
        handle.close()


def test_simulated_labelers_label_through_the_http_api_and_the_misreader_is_flagged(project_dir):
    from alignloop.consensus.report import project_consensus
    from alignloop.project import open_project
    from alignloop.simulate import simulate_labelers

    _sentiment_project(project_dir, 40)
    result = simulate_labelers(project_dir, labelers=5, noise=0.1, misreaders=1, seed=3)
    assert result.judgements == 40 * 3  # every prompt reaches the project's overlap of 3
    assert all(lab.judgements > 0 for lab in result.labelers)
    handle = open_project(project_dir)
    try:
        report = project_consensus(handle)
    finally:
        handle.close()
    flagged = {q.name for q in report.labelers if q.flagged}
    assert flagged == {lab.name for lab in result.labelers if lab.misreader}
    assert len(report.prompts) == 40 and all(p.n_labelers >= 2 for p in report.prompts)


def test_where_the_project_allows_ties_labelers_place_equal_answers_level_and_no_pair_is_made_of_them(project_dir):
    import yaml
    from sqlalchemy import select

    from alignloop.judges import sentiment
    from alignloop.pairs import build_pairs
    from alignloop.project import open_project
    from alignloop.simulate import simulate_labelers
    from alignloop.store import Judgement

    config_path = project_dir / "alignloop.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["labeling"]["allow_ties"] = True
    config_path.write_text(yaml.safe_dump(config))
    _sentiment_project(project_dir, 12)  # "It was fine and okay." and "It was okay and dull." score the same
    simulate_labelers(project_dir, labelers=3, noise=0.1, seed=4)
    with open_project(project_dir) as handle:
        with handle.store.session() as s:
            rankings = list(s.scalars(select(Judgement.ranking).where(Judgement.kind == "ranking")))
        pairs = build_pairs(handle)
    assert len(rankings) == 12 * 3 and any(len(tier) > 1 for ranking in rankings for tier in ranking)
    assert pairs and all(sentiment(p.prompt, p.chosen) != sentiment(p.prompt, p.rejected) for p in pairs)


def test_the_judges_spread_is_the_mean_of_each_prompts_standard_deviation():
    import pytest

    from alignloop.errors import InputError
    from alignloop.judges import checked
    from alignloop.simulate import judge_spread

    scores = {"a": 0.0, "b": 2.0, "c": 1.0}
    judge = lambda prompt, text: scores[text]  # noqa: E731
    # prompt 1: sd of (0, 2) = √2; prompt 2: sd of (1, 1, 1) = 0; a lone answer compares with nothing
    assert judge_spread(judge, [("p1", ["a", "b"]), ("p2", ["c", "c", "c"]), ("p3", ["b"])]) == pytest.approx(0.5**0.5)
    with pytest.raises(InputError, match="same score"):
        judge_spread(judge, [("p2", ["c", "c"]), ("p3", ["a"])])
    for bad in (None, float("nan"), "good"):
        with pytest.raises(InputError, match="not a number"):
            judge_spread(checked(lambda prompt, text, bad=bad: bad if text == "b" else 0.0, "j"), [("p1", ["a", "b"])])


def test_with_noise_in_units_of_the_judges_spread_the_judges_scale_does_not_change_a_single_ranking(
    project_dir, tmp_path
):
    import pytest
    from sqlalchemy import select

    from alignloop.project import init_project, open_project
    from alignloop.simulate import simulate_labelers
    from alignloop.store import Judgement

    def rankings(directory):
        with open_project(directory) as handle, handle.store.session() as s:
            return list(s.scalars(select(Judgement.ranking).order_by(Judgement.id)))

    small = tmp_path / "small_judge.py"
    small.write_text("from alignloop.judges import sentiment\n\ndef judge(p, c):\n    return sentiment(p, c) / 1000\n")
    other = tmp_path / "other"
    init_project(other, name="test-project").close()
    _sentiment_project(project_dir, 16)
    _sentiment_project(other, 16)  # the same prompts and answers
    settings = dict(labelers=3, noise=0.45, noise_unit="spread", seed=2)
    plain = simulate_labelers(project_dir, judge="alignloop.judges:sentiment", **settings)
    scaled = simulate_labelers(other, judge=f"{small}:judge", **settings)
    assert scaled.noise == pytest.approx(plain.noise / 1000) and plain.noise > 0
    assert len(rankings(project_dir)) == 16 * 3
    assert rankings(project_dir) == rankings(other)


def test_simulate_refuses_more_misreaders_than_labelers(project_dir):
    import pytest

    from alignloop.errors import InputError
    from alignloop.simulate import simulate_labelers

    with pytest.raises(InputError, match="misreaders"):
        simulate_labelers(project_dir, labelers=2, misreaders=3)


def test_simulated_labelers_answer_thumbs_tasks(project_dir):
    import yaml

    from alignloop.pairs import build_pairs, build_unpaired
    from alignloop.project import open_project
    from alignloop.simulate import simulate_labelers

    config_path = project_dir / "alignloop.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["labeling"]["task_type"] = "thumbs"
    config_path.write_text(yaml.safe_dump(config))
    _sentiment_project(project_dir, 8)
    result = simulate_labelers(project_dir, labelers=3, noise=0.0, seed=1)
    assert result.judgements == 8 * 3
    handle = open_project(project_dir)
    try:
        pairs = build_pairs(handle)
        examples = build_unpaired(handle)
    finally:
        handle.close()
    assert pairs and all(p.provenance["task"] == "thumbs" for p in pairs)
    assert {e["label"] for e in examples} == {True, False}


def test_simulated_labelers_can_be_created_through_the_admin_api_of_a_running_server(project_dir):
    from alignloop.labeling.accounts import add_labeler
    from alignloop.labeling.client import LabelingClient
    from alignloop.labeling.server import start_server
    from alignloop.project import open_project
    from alignloop.simulate import simulate_labelers

    _sentiment_project(project_dir, 4)
    handle = open_project(project_dir)
    try:
        token = add_labeler(handle.store, "boss", admin=True)
    finally:
        handle.close()
    server = start_server(project_dir)
    try:
        with LabelingClient(server.url) as client:
            client.accept_invite(token, "boss-password-1")
        result = simulate_labelers(
            None, url=server.url, admin="boss", admin_password="boss-password-1", labelers=3, seed=2
        )
    finally:
        server.stop()
    assert result.judgements == 4 * 3


def test_a_simulated_answer_does_not_depend_on_the_order_the_app_shows():
    """The app shuffles each labeler's display order (to measure position bias); a simulated labeler's answer
    must not depend on it, so a demo run repeats with its seed."""
    from alignloop.judges import sentiment
    from alignloop.simulate import simulated_answer

    completions = [{"id": 10 + i, "text": f"It was {w}."} for i, w in enumerate(["lovely", "dull", "fine", "sad"])]
    for task_type in ("ranking", "thumbs"):
        answers = []
        for shown in (completions, completions[::-1], completions[2:] + completions[:2]):
            task = {"prompt": "How was it?", "completions": shown, "task_type": task_type}
            answers.append(simulated_answer(task, sentiment, 0.5, np.random.default_rng(3), flip=False))
        assert answers[0] == answers[1] == answers[2]


def test_a_simulated_labeler_ties_answers_only_where_the_project_allows_it():
    from alignloop.simulate import simulated_answer

    completions = [{"id": 10 + i, "text": t} for i, t in enumerate(["Yes.", "No, never.", "Yes.", "Maybe so."])]

    def words(prompt: str, completion: str) -> float:
        return float(len(completion.split()))

    def answer(allow_ties: bool) -> list[list[int]]:
        task = {"prompt": "?", "completions": completions, "task_type": "ranking", "allow_ties": allow_ties}
        return simulated_answer(task, words, 0.0, np.random.default_rng(0), flip=False)

    assert answer(True) == [[11, 13], [10, 12]]
    assert answer(False) == [[11], [13], [10], [12]]


def test_noise_in_units_of_the_judges_spread_needs_the_project_to_read_the_answers_from():
    import pytest

    from alignloop.errors import InputError
    from alignloop.simulate import simulate_labelers

    with pytest.raises(InputError, match="--project") as caught:
        simulate_labelers(None, url="http://127.0.0.1:9", admin="root", noise_unit="spread")
    assert caught.value.field == "--noise-unit"
