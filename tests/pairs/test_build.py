"""Pairs: from consensus and labelers, thumbs, provenance, formats, import."""

from __future__ import annotations

import json

import numpy as np
import pytest
from consensus.builders import add_guideline, add_labelers, add_prompt, judge
from hypothesis import given
from hypothesis import strategies as st

from alignloop.consensus.aggregate import aggregate
from alignloop.consensus.rankings import RankingSet
from alignloop.errors import AlignloopError, InputError
from alignloop.pairs import (
    FORMATS,
    build_pairs,
    build_unpaired,
    format_rows,
    import_pairs,
    read_pairs,
    write_pairs,
)
from alignloop.pairs.build import consensus_pairs
from alignloop.project import open_project
from alignloop.records import Comparison


@pytest.fixture
def handle(project_dir):
    h = open_project(project_dir)
    yield h
    h.close()


def _ranked_project(handle, n_prompts=2, split="train"):
    labelers = add_labelers(handle, ["ann", "bob", "cid"])
    g = add_guideline(handle, 3)
    prompts = []
    for i in range(n_prompts):
        pid, ids = add_prompt(handle, f"prompt {i}", [f"answer {i}.{k}" for k in range(4)], split=split)
        a, b, c, d = ids
        judge(handle, pid, labelers[0], ranking=[[a], [b], [c], [d]], guideline_id=g)
        judge(handle, pid, labelers[1], ranking=[[a], [b], [c], [d]], guideline_id=g)
        judge(handle, pid, labelers[2], ranking=[[b], [a], [c], [d]], guideline_id=g)
        prompts.append((pid, ids))
    return labelers, prompts


def test_a_ranking_of_four_gives_six_pairs_preferred_first_with_provenance(handle):
    labelers, prompts = _ranked_project(handle, n_prompts=1, split="test")
    pid, (a, b, c, d) = prompts[0]
    pairs = build_pairs(handle)
    assert len(pairs) == 6
    order = {a: 0, b: 1, c: 2, d: 3}
    for p in pairs:
        assert order[p.provenance["chosen_id"]] < order[p.provenance["rejected_id"]]
        assert p.provenance["prompt_id"] == pid
        assert sorted(p.provenance["labeler_ids"]) == sorted(labelers)
        assert p.provenance["guideline_version"] == 3
        assert p.provenance["round"] == 0
        assert p.split == "test"
        assert p.prompt == "prompt 0"
    ab = next(p for p in pairs if p.provenance["chosen_id"] == a and p.provenance["rejected_id"] == b)
    ad = next(p for p in pairs if p.provenance["chosen_id"] == a and p.provenance["rejected_id"] == d)
    assert ab.agreement == pytest.approx(2 / 3)
    assert ad.agreement == 1.0
    assert ad.margin == 1.0  # first against last, by everyone
    assert 0 < ab.margin < ad.margin


def test_pairs_from_each_labeler_keep_the_labeler(handle):
    labelers, _ = _ranked_project(handle, n_prompts=1)
    pairs = build_pairs(handle, source="labelers")
    assert len(pairs) == 3 * 6
    assert {tuple(p.provenance["labeler_ids"]) for p in pairs} == {(lid,) for lid in labelers}


def test_min_agreement_drops_contested_pairs(handle):
    _ranked_project(handle, n_prompts=1)
    assert len(build_pairs(handle, min_agreement=0.9)) == 5  # a-vs-b has 2/3


def test_a_labeler_who_places_two_answers_level_gives_half_a_vote_to_each(handle):
    """One labeler prefers a, two call a and b equal: the consensus orders a first, and the pair's
    agreement, the reward model's soft label, must lean the same way (2/3, not 1/3)."""
    l1, l2, l3 = add_labelers(handle, ["ann", "bob", "cid"])
    pid, (a, b, c) = add_prompt(handle, "p", ["x", "y", "z"])
    judge(handle, pid, l1, ranking=[[a], [b], [c]])
    judge(handle, pid, l2, ranking=[[a, b], [c]])
    judge(handle, pid, l3, ranking=[[a, b], [c]])
    pairs = {(p.provenance["chosen_id"], p.provenance["rejected_id"]): p for p in build_pairs(handle)}
    assert pairs[(a, b)].agreement == pytest.approx(2 / 3)
    assert pairs[(a, c)].agreement == pytest.approx(1.0)
    assert pairs[(b, c)].agreement == pytest.approx(1.0)


def test_ties_give_level_pairs_at_half_a_vote_only_when_asked(handle):
    """Two answers every labeler placed level make no ordered pair; with ``ties`` they make one tied pair
    whose agreement is ½, while the ordered pairs stay exactly as they were."""
    labelers = add_labelers(handle, ["ann", "bob", "cid"])
    pid, (a, b, c) = add_prompt(handle, "p", ["x", "y", "z"])
    for lid in labelers:
        judge(handle, pid, lid, ranking=[[a, b], [c]])
    ordered = build_pairs(handle)
    assert {(p.provenance["chosen_id"], p.provenance["rejected_id"]) for p in ordered} == {(a, c), (b, c)}
    assert not any(p.tied for p in ordered)
    with_ties = build_pairs(handle, ties=True)
    tied = [p for p in with_ties if p.tied]
    assert len(tied) == 1
    assert {tied[0].provenance["chosen_id"], tied[0].provenance["rejected_id"]} == {a, b}
    assert tied[0].agreement == pytest.approx(0.5)
    assert tied[0].margin == 0.0
    assert [p.to_json() for p in with_ties if not p.tied] == [p.to_json() for p in ordered]
    assert sum(p.tied for p in build_pairs(handle, source="labelers", ties=True)) == 3  # one per labeler


def test_a_tie_with_a_flagged_answer_gives_no_pair(handle):
    l1, l2 = add_labelers(handle, ["ann", "bob"])
    pid, (a, b, c) = add_prompt(handle, "p", ["x", "y", "z"])
    judge(handle, pid, l1, ranking=[[a, b], [c]], unusable={b: "pii"})
    judge(handle, pid, l2, ranking=[[a, b], [c]])
    assert not any(p.tied for p in build_pairs(handle, ties=True))


def test_thumbs_make_no_ties(handle):
    """Two thumbs up were each judged alone, never against each other: no tie to learn from."""
    l1, l2 = add_labelers(handle, ["ann", "bob"])
    pid, (a, b, c) = add_prompt(handle, "p", ["x", "y", "z"])
    judge(handle, pid, l1, thumbs={a: 1, b: 1, c: -1})
    judge(handle, pid, l2, thumbs={a: 1, b: 1, c: -1})
    assert {(p.provenance["chosen_id"], p.provenance["rejected_id"]) for p in build_pairs(handle, ties=True)} == {
        (a, c),
        (b, c),
    }


def test_a_flagged_completion_is_never_chosen(handle):
    a_l, b_l = add_labelers(handle, ["ann", "bob"])
    pid, (a, b, c) = add_prompt(handle, "p", ["x", "y", "z"])
    judge(handle, pid, a_l, ranking=[[a], [b], [c]], unusable={a: "pii"})
    judge(handle, pid, b_l, ranking=[[a], [b], [c]])
    for source in ("consensus", "labelers"):
        pairs = build_pairs(handle, source=source)
        assert pairs and all(p.provenance["chosen_id"] != a for p in pairs)
        assert any(p.provenance["rejected_id"] == a for p in pairs)


def test_flagged_labelers_are_left_out_unless_asked(handle):
    good = add_labelers(handle, [f"good{i}" for i in range(4)])
    (bad,) = add_labelers(handle, ["bad"])
    rng = np.random.default_rng(0)
    for i in range(20):
        pid, ids = add_prompt(handle, f"p{i}", ["a", "b", "c", "d"])
        order = list(rng.permutation(ids))
        for lid in good:
            judge(handle, pid, lid, ranking=[[int(x)] for x in order])
        judge(handle, pid, bad, ranking=[[int(x)] for x in reversed(order)])
    pairs = build_pairs(handle, source="labelers")
    assert all(bad not in p.provenance["labeler_ids"] for p in pairs)
    assert len(pairs) == 20 * 4 * 6
    assert len(build_pairs(handle, source="labelers", exclude_flagged=False)) == 20 * 5 * 6


def test_thumbs_give_up_down_pairs_and_unpaired_examples(handle):
    l1, l2, l3 = add_labelers(handle, ["ann", "bob", "cid"])
    pid, (a, b, c, d) = add_prompt(handle, "p", ["w", "x", "y", "z"])
    judge(handle, pid, l1, thumbs={a: 1, b: 1, c: -1, d: -1})
    judge(handle, pid, l2, thumbs={a: 1, b: 1, c: -1, d: 1})
    judge(handle, pid, l3, thumbs={a: 1, b: -1, c: -1, d: -1})
    pairs = build_pairs(handle)
    got = {(p.provenance["chosen_id"], p.provenance["rejected_id"]) for p in pairs}
    assert got == {(a, c), (a, d), (b, c), (b, d)}
    assert all(p.provenance["task"] == "thumbs" for p in pairs)
    examples = build_unpaired(handle)
    assert {(e["provenance"]["completion_id"], e["label"]) for e in examples} == {
        (a, True),
        (b, True),
        (c, False),
        (d, False),
    }
    assert len(build_unpaired(handle, source="labelers")) == 12


@given(st.integers(2, 8), st.integers(1, 5), st.integers(1, 20), st.integers(0, 2**31 - 1))
def test_every_fully_ranked_prompt_gives_exactly_k_choose_2_pairs(k, n_labelers, n_prompts, seed):
    rng = np.random.default_rng(seed)
    orders = np.stack([[rng.permutation(k) for _ in range(n_labelers)] for _ in range(n_prompts)])
    rs = RankingSet.from_orders(orders)
    cons = aggregate(rs, weights=rs.mask.astype(float) + rng.random(rs.mask.shape) * 1e-3)
    arrays = consensus_pairs(rs, cons.ranks, cons.unusable, np.ones(rs.mask.shape))
    assert np.all(np.bincount(arrays.row, minlength=n_prompts) == k * (k - 1) // 2)
    assert np.all(cons.ranks[arrays.row, arrays.chosen] < cons.ranks[arrays.row, arrays.rejected])


# ---- formats ---------------------------------------------------------------------------------

PLAIN = Comparison(prompt="What is 2+2?", chosen="4.", rejected="5.", margin=0.5)
CHAT = Comparison(
    prompt="And times 3?",
    chosen="12.",
    rejected="9.",
    margin=0.25,
    messages=[
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And times 3?"},
    ],
)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("chat", [False, True])
def test_every_format_reads_back_what_it_wrote(tmp_path, fmt, chat):
    path = tmp_path / "pairs.jsonl"
    if fmt in ("trl", "openrlhf") and not chat:  # plain text cannot hold CHAT's system message and turns
        with pytest.raises(AlignloopError, match="--chat"):
            write_pairs(path, [PLAIN, CHAT], fmt, chat=chat)
        assert not path.exists()
        return
    write_pairs(path, [PLAIN, CHAT], fmt, chat=chat)
    back = read_pairs(path)  # format detected
    assert [(p.prompt, p.chosen, p.rejected) for p in back] == [
        (PLAIN.prompt, PLAIN.chosen, PLAIN.rejected),
        (CHAT.prompt, CHAT.chosen, CHAT.rejected),
    ]
    if fmt != "hh":
        assert [p.margin for p in back] == [0.5, 0.25]
    if fmt == "alignloop" or (chat and fmt != "hh"):
        assert back[1].messages == CHAT.messages
    if fmt == "hh":  # HH has no system role: it is folded into the first Human turn
        assert [m["role"] for m in back[1].messages] == ["user", "assistant", "user"]
    assert read_pairs(path, fmt)[0].chosen == "4."


def test_trl_chat_rows_are_conversational():
    (row,) = format_rows([PLAIN], "trl", chat=True)
    assert row["prompt"] == [{"role": "user", "content": "What is 2+2?"}]
    assert row["chosen"] == [{"role": "assistant", "content": "4."}]


def test_hh_rows_are_human_assistant_transcripts():
    (row,) = format_rows([PLAIN], "hh")
    assert row == {
        "chosen": "\n\nHuman: What is 2+2?\n\nAssistant: 4.",
        "rejected": "\n\nHuman: What is 2+2?\n\nAssistant: 5.",
    }


@pytest.mark.parametrize(
    ("row", "field"),
    [
        ({"prompt": "p", "chosen": "c"}, "rejected"),
        ({"prompt": "p", "chosen": 3, "rejected": "r"}, "chosen"),
        ({"prompt": "p", "chosen": "c", "rejected": "r", "margin": -1}, "margin"),
        ({"chosen": [{"role": "user", "content": "p"}], "rejected": [{"role": "user", "content": "p"}]}, "chosen"),
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: other\n\nAssistant: c"}, "rejected"),
        ({"prompt": "p", "chosen": "c", "rejected": "r", "split": "train", "tied": "yes"}, "tied"),
    ],
)
def test_bad_rows_are_refused_naming_file_line_and_field(tmp_path, row, field):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "ok", "chosen": "a", "rejected": "b"}) + "\n" + json.dumps(row) + "\n")
    with pytest.raises(InputError) as info:
        read_pairs(path)
    assert info.value.line == 2
    assert info.value.field == field
    assert str(path) in str(info.value)


def test_imported_pairs_join_the_project_and_follow_its_split(handle, tmp_path):
    pid, _ = add_prompt(handle, "Known prompt", ["a", "b"], split="test")
    path = tmp_path / "mine.jsonl"
    path.write_text(
        json.dumps({"prompt": "Known prompt", "chosen": "good", "rejected": "bad"})
        + "\n"
        + json.dumps({"prompt": "New prompt", "chosen": "yes", "rejected": "no", "margin": 1.0})
        + "\n"
    )
    result = import_pairs(handle, path)
    assert result.pairs == 2 and result.test >= 1
    pairs = build_pairs(handle)
    assert [(p.prompt, p.chosen) for p in pairs] == [("Known prompt", "good"), ("New prompt", "yes")]
    assert pairs[0].split == "test"
    assert pairs[0].provenance == {"source": "import", "file": "mine.jsonl", "line": 1}
    with pytest.raises(AlignloopError, match="already imported"):
        import_pairs(handle, path)


def test_a_round_filter_keeps_only_those_rounds_and_leaves_out_imports(handle, tmp_path):
    _ranked_project(handle, n_prompts=1)
    path = tmp_path / "extra.jsonl"
    path.write_text(json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}) + "\n")
    import_pairs(handle, path)
    assert len(build_pairs(handle)) == 6 + 1
    assert len(build_pairs(handle, rounds=[0])) == 6
    assert build_pairs(handle, rounds=[1]) == []


def test_blind_evaluation_rounds_are_not_training_pairs(handle):
    from consensus.builders import add_round

    labelers, _ = _ranked_project(handle, n_prompts=1)
    eval_round = add_round(handle, 1, kind="eval")
    pid, (a, b) = add_prompt(handle, "eval prompt", ["policy A", "policy B"], round_id=eval_round)
    for lid in labelers:
        judge(handle, pid, lid, ranking=[[a], [b]], round_id=eval_round)
    assert len(build_pairs(handle)) == 6
    assert len(build_pairs(handle, rounds=[1])) == 1


def test_identical_completions_give_no_pair(handle):
    l1, l2 = add_labelers(handle, ["ann", "bob"])
    pid, (a, b, c) = add_prompt(handle, "p", ["Yes.", "Yes.", "No."])
    for lid in (l1, l2):
        judge(handle, pid, lid, ranking=[[a], [b], [c]])
    pairs = build_pairs(handle)
    assert len(pairs) == 2 and all(p.chosen != p.rejected for p in pairs)


def _add_stored_prompts(handle, rows):
    from alignloop.prompts import add_prompts

    return add_prompts(handle, rows, "test")


def test_imported_pairs_of_a_chat_prompt_land_in_the_split_prompts_add_gave_it(handle, tmp_path):
    from alignloop.prompts import PromptRow

    conversation = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Name a colour."}]
    single = [{"role": "user", "content": "Name a fruit."}]
    _add_stored_prompts(
        handle,
        [
            PromptRow(text="Name a colour.", messages=conversation, split="test"),
            PromptRow(text="Name a fruit.", messages=single, split="test"),
        ],
    )
    path = tmp_path / "chat.jsonl"
    rows = [
        {"prompt": conversation, "chosen": [{"role": "assistant", "content": "Red."}], "rejected": "Well..."},
        {"prompt": "Name a fruit.", "chosen": "Apple.", "rejected": "Hmm."},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    handle.config.split.test_fraction = 0.0  # the hash rule alone would put every prompt in train
    import_pairs(handle, path)
    assert [p.split for p in build_pairs(handle)] == ["test", "test"]
    # and adding the same conversation again is a duplicate, not a second prompt
    again = _add_stored_prompts(handle, [PromptRow(text="Name a colour.", messages=conversation)])
    assert again.added == 0


def test_a_one_message_chat_prompt_stored_by_an_older_version_is_still_matched(handle, tmp_path):
    from alignloop.prompts import PromptRow, legacy_prompt_hash, prompt_hash
    from alignloop.store import Prompt

    single = [{"role": "user", "content": "Name a tree."}]
    assert prompt_hash("Name a tree.", single) == prompt_hash("Name a tree.", None)
    with handle.store.session() as s:  # the key stores made before: the JSON of the message list
        s.add(
            Prompt(
                project_id=handle.project_id,
                text="Name a tree.",
                messages=single,
                text_hash=legacy_prompt_hash("Name a tree.", single),
                split="test",
                source="old",
            )
        )
    assert _add_stored_prompts(handle, [PromptRow(text="Name a tree.", messages=single)]).added == 0
    path = tmp_path / "tree.jsonl"
    path.write_text(json.dumps({"prompt": "Name a tree.", "chosen": "Oak.", "rejected": "No."}) + "\n")
    handle.config.split.test_fraction = 0.0
    import_pairs(handle, path)
    assert [p.split for p in build_pairs(handle)] == ["test"]


@pytest.mark.parametrize("fmt", ["trl", "openrlhf"])
def test_text_exports_refuse_chat_prompts_instead_of_dropping_turns(tmp_path, fmt):
    with pytest.raises(AlignloopError, match=r"1 of 2 pairs have chat prompts.*--chat"):
        format_rows([PLAIN, CHAT], fmt)
    one_turn = Comparison("Hi?", "Hello.", "Go away.", messages=[{"role": "user", "content": "Hi?"}])
    assert format_rows([one_turn], fmt)[0]["prompt"] == "Hi?"  # a single user turn loses nothing


@pytest.mark.parametrize("fmt", ["trl", "openrlhf", "hh"])
def test_exports_that_cannot_say_tie_refuse_tied_pairs(fmt):
    """A tie written as chosen/rejected would be read back, by alignloop or any trainer, as a preference."""
    tie = Comparison("Hi?", "Hello.", "Hi.", agreement=0.5, tied=True)
    with pytest.raises(AlignloopError, match=rf"1 of 2 pairs are ties.*{fmt}.*--format alignloop"):
        format_rows([PLAIN, tie], fmt)


def test_the_alignloop_format_keeps_a_tie_and_omits_the_key_otherwise(tmp_path):
    tie = Comparison("Hi?", "Hello.", "Hi.", agreement=0.5, tied=True)
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, [PLAIN, tie])
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert "tied" not in rows[0] and rows[1]["tied"] is True
    assert [p.tied for p in read_pairs(path)] == [False, True]


def test_hh_export_refuses_a_text_that_contains_a_turn_marker():
    tricky = Comparison("Quote a dialogue.", "It went:\n\nAssistant: hello", "No.")
    with pytest.raises(AlignloopError, match="pair 1 .*hh"):
        format_rows([tricky], "hh")


def test_hh_keeps_the_leading_space_of_an_answer(tmp_path):
    spaced = Comparison("Indent this.", "  indented", " one space")
    path = tmp_path / "hh.jsonl"
    write_pairs(path, [spaced], "hh")
    (back,) = read_pairs(path)
    assert (back.chosen, back.rejected) == ("  indented", " one space")
    assert back.prompt == "Indent this."


@pytest.mark.parametrize("fmt", ["trl", "openrlhf"])
@pytest.mark.parametrize("chat", [False, True])
def test_trl_and_openrlhf_round_trips_keep_agreement(tmp_path, fmt, chat):
    pairs = [replace_agreement(PLAIN, 0.67), replace_agreement(CHAT, None)]
    if not chat:
        pairs = pairs[:1]
    path = tmp_path / "pairs.jsonl"
    write_pairs(path, pairs, fmt, chat=chat)
    assert [p.agreement for p in read_pairs(path)] == [p.agreement for p in pairs]


def replace_agreement(pair, agreement):
    from dataclasses import replace

    return replace(pair, agreement=agreement)


def test_an_agreement_outside_zero_to_one_is_refused(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b", "agreement": 1.5}) + "\n")
    with pytest.raises(InputError) as info:
        read_pairs(path)
    assert info.value.field == "agreement"


def test_export_to_a_scratch_path_leaves_the_rounds_pairs_file_alone(handle, project_dir, tmp_path):
    from alignloop import api

    _ranked_project(handle, n_prompts=1)
    own = project_dir / "pairs" / "round-0.jsonl"
    api.export_pairs(project_dir, own)
    assert api.list_rounds(project_dir)[0].dataset == str(own)
    api.export_pairs(project_dir, tmp_path / "scratch.jsonl", fmt="trl")
    assert api.list_rounds(project_dir)[0].dataset == str(own)
