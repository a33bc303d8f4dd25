"""`serve-model` with labeler groups' policies: each served beside the pooled one, and a member of a group
asking for the main model is answered by their group's policy; feedback lands in that policy's serve round."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from alignloop.labeling.accounts import add_labeler
from alignloop.project import open_project
from alignloop.rounds import record_in_project
from alignloop.store import Completion, Judgement, Labeler, Round

from .conftest import PASSWORD

ASK = [{"role": "user", "content": "Write a short poem about the sea."}]


@pytest.fixture
def served(project_dir: Path, tiny_lm: Path, tmp_path: Path) -> Iterator[dict]:
    """The tiny policy as the pooled one, a copy of it as group 1's; ana is in group 1, bo in none."""
    from alignloop.serving.server import load_group_samplers, load_project_sampler, start_model_server

    group_policy = tmp_path / "group-1-policy"
    shutil.copytree(tiny_lm, group_policy)
    record_in_project(project_dir, group="1", trained_policy=str(group_policy))
    with open_project(project_dir) as handle:
        invites = {name: add_labeler(handle.store, name) for name in ("ana", "bo")}
        with handle.store.session() as s:
            ids = dict(s.execute(select(Labeler.name, Labeler.id)).all())
    summary = {"labeler_groups": [{"group": 1, "labeler_ids": [ids["ana"]], "names": ["ana"], "agreement": 0.5}]}
    (project_dir / "consensus").mkdir()
    (project_dir / "consensus" / "summary.json").write_text(json.dumps(summary))

    options = {"backend": "hf", "dtype": "float32", "device": "cpu"}
    sampler = load_project_sampler(project_dir, model=str(tiny_lm), **options)
    groups = load_group_samplers(project_dir, **options)
    server = start_model_server(project_dir, sampler, name="tiny", groups=groups)
    keys = {}
    for name, token in invites.items():
        response = httpx.post(f"{server.url}/api/invite/accept", json={"token": token, "password": PASSWORD})
        keys[name] = response.json()["api_key"]
    yield {"url": server.url, "keys": keys, "pooled": str(tiny_lm), "group": str(group_policy)}
    server.stop()


def _ask(served: dict, user: str, model: str) -> httpx.Response:
    body = {"model": model, "messages": ASK, "n": 2, "max_tokens": 4, "seed": 1}
    headers = {"Authorization": f"Bearer {served['keys'][user]}"}
    return httpx.post(f"{served['url']}/v1/chat/completions", json=body, headers=headers, timeout=120)


def test_each_groups_policy_is_listed_beside_the_main_one(served: dict) -> None:
    headers = {"Authorization": f"Bearer {served['keys']['bo']}"}
    listed = httpx.get(f"{served['url']}/v1/models", headers=headers, timeout=60).json()["data"]
    assert [(m["id"], m["root"], m["group"]) for m in listed] == [
        ("tiny", served["pooled"], None),
        ("tiny:group-1", served["group"], "1"),
    ]
    one = httpx.get(f"{served['url']}/v1/models/tiny:group-1", headers=headers, timeout=60)
    assert one.json()["root"] == served["group"]


def test_a_member_is_answered_by_their_groups_policy_and_others_by_the_main_one(served: dict) -> None:
    ana = _ask(served, "ana", "tiny").json()
    assert (ana["model"], ana["model_version"]) == ("tiny:group-1", served["group"])
    bo = _ask(served, "bo", "tiny").json()
    assert (bo["model"], bo["model_version"]) == ("tiny", served["pooled"])
    chosen = _ask(served, "bo", "tiny:group-1").json()  # anyone may name a group's model
    assert chosen["model_version"] == served["group"]
    missing = _ask(served, "bo", "tiny:group-2")
    assert missing.status_code == 404
    assert "'tiny', 'tiny:group-1'" in missing.json()["error"]["message"]


def test_feedback_on_a_groups_answers_is_stored_in_that_policys_serve_round(served: dict, project_dir: Path) -> None:
    answer = _ask(served, "ana", "tiny").json()
    first, second = (c["completion_id"] for c in answer["choices"])
    headers = {"Authorization": f"Bearer {served['keys']['ana']}"}
    stored = httpx.post(
        f"{served['url']}/v1/feedback", json={"chosen": first, "rejected": second}, headers=headers, timeout=60
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["model_version"] == served["group"]
    with open_project(project_dir) as handle, handle.store.session() as s:
        policy = s.scalar(
            select(Round.policy).join(Judgement, Judgement.round_id == Round.id).where(Judgement.kind == "pairwise")
        )
        models = set(s.scalars(select(Completion.model).where(Completion.id.in_([first, second]))))
    assert policy == served["group"] and models == {served["group"]}


def _adapter(tiny_lm: Path, directory: Path) -> Path:
    """A LoRA adapter on the tiny policy whose B factors are random, so that it changes what is sampled."""
    import torch

    from alignloop.models import add_lora, load_policy
    from alignloop.rl.config import RLConfig

    policy, tokenizer = load_policy(str(tiny_lm), dtype="float32", device="cpu")
    torch.manual_seed(0)
    adapted = add_lora(policy, RLConfig(lora_r=4))
    for name, param in adapted.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.5)
    adapted.save_pretrained(directory)
    tokenizer.save_pretrained(directory)  # as train-rl saves a policy
    return directory


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_groups_lora_adapters_take_turns_on_the_one_loaded_model(
    project_dir: Path, tiny_lm: Path, tmp_path: Path, dtype: str
) -> None:
    from alignloop.backends import SamplingParams
    from alignloop.serving.sampler import load_sampler
    from alignloop.serving.server import load_group_samplers, load_project_sampler

    options = {"backend": "hf", "dtype": dtype, "device": "cpu"}
    adapters = {g: _adapter(tiny_lm, tmp_path / f"group-{g}") for g in ("1", "2")}
    record_in_project(project_dir, group="1", trained_policy=str(adapters["1"]))
    record_in_project(project_dir, group="2", trained_policy=str(tiny_lm))  # a full model: loaded on its own
    main = load_project_sampler(project_dir, model=str(tiny_lm), **options)
    groups = load_group_samplers(project_dir, main=main, **options)
    assert groups["1"].backend is main.backend and groups["1"].lock is main.lock  # one copy of the base weights
    assert groups["2"].backend is not main.backend

    params = SamplingParams(max_new_tokens=12, temperature=1.0, top_p=1.0)

    def texts(sampler: object) -> list[str]:
        return [a.text for a in sampler.answer(ASK, 4, params, [11, 12, 13, 14])]  # type: ignore[attr-defined]

    before, group, after = texts(main), texts(groups["1"]), texts(main)
    assert group != before
    assert after == before  # the base weights are back for everyone else
    if dtype == "float32":  # in bf16 merging W + s·B·A rounds otherwise than applying the adapter on the fly
        assert group == texts(load_sampler(str(adapters["1"]), **options))  # the adapter loaded on its own
