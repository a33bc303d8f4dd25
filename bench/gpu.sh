#!/usr/bin/env bash
# The GPU figures of docs/benchmarks.md: the CUDA paths under test, then generation, GRPO/RLOO and
# the reward model against their peers, each on the GPU. For a machine with an NVIDIA GPU, a
# python3 that holds CUDA torch and no network: it receives the repository and .gpu/, made here by
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 ... -d .gpu/whl PKG==VER
#     (alignloop's dependencies that machine lacks, and trl==1.16.0), and
#   .gpu/models/{smollm2,minilm}: the default models' config and tokenizer files, no weights.
# The weights are random stand-ins (bench/shaped_models.py): the timings hold, quality figures do not.
# Each step has a time limit and its own log under $OUT; one failing step does not stop the rest.
# STEPS="tests rl" runs only those (default: every step; models always runs); RL_ALGOS=grpo,
# RL_LIMIT=240 and RL_ARGS="--dtype float32" narrow the rl step. All of them take longer
# than one 10-minute call: on 2026-12-04 tests took 50-100 s, generate 115, reward 50, and rl
# did not finish its 2 repeats in 200 s. Split them: STEPS="tests generate reward", then STEPS="rl demo".
# USE_HUB_KERNELS=NO: transformers would fetch hub kernels for the peers' models, and nothing can be fetched.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu-bench}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONWARNINGS=ignore USE_HUB_KERNELS=NO
STEPS=${STEPS:-tests generate reward rl demo}
export ALIGNLOOP_CACHE=/tmp/alignloop-cache
site=/tmp/site
quiet_pip=(python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade)
"${quiet_pip[@]}" --target "$site" $(ls .gpu/whl/*.whl | grep -v /trl-) || exit 1
"${quiet_pip[@]}" --target .bench/trl .gpu/whl/trl-*.whl || exit 1
export PYTHONPATH="$site:$PWD"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to $OUT/NAME.log, show its tail
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  [[ $name == models || " $STEPS " == *" $name "* ]] || return 0
  echo "=== $name (limit ${limit} s)"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "=== $name: exit $? after $((SECONDS - start)) s"
  grep -v -E "^\s*$|Warning|warn\(" "$OUT/$name.log" | tail -n "${TAIL:-30}"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import importlib.metadata as m, torch; print('torch', torch.__version__, torch.cuda.get_device_name(0));
print(*(f'{n} {m.version(n)}' for n in 'transformers accelerate peft datasets pyarrow fsspec numpy'.split()))"
step models 120 python3 bench/shaped_models.py --source .gpu/models --site "$site"
TAIL=40 step tests "${TEST_LIMIT:-150}" python3 -m pytest -q -p no:cacheprovider -m "not slow" -k "not distributed" \
  -n 8 tests/rl tests/reward tests/test_generate.py tests/test_sampling.py tests/test_evaluate.py tests/test_models.py \
  tests/test_precision.py tests/test_kv_cache.py tests/test_loop.py
step generate "${GEN_LIMIT:-120}" python3 bench/generate.py --device cuda --prompts 32 -k 4 --max-new-tokens 64 --batch-size 128 --repeats 2
step rl "${RL_LIMIT:-300}" python3 bench/rl_vs_trl.py --device cuda --steps 8 --repeats 1 --algos "${RL_ALGOS:-grpo,rloo}" ${RL_ARGS:-}
step reward 120 python3 bench/reward_vs_trl.py --device cuda --dtype auto --repeats 3
# the whole loop on the GPU: every stage's CUDA path in one process, and its minutes
step demo 280 python3 -m alignloop demo --quick --dir /tmp/gpu-demo --overwrite
