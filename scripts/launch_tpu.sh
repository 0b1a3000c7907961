#!/usr/bin/env bash
# Run the same training command on every worker of a Cloud TPU VM slice (multi-host, jax.distributed).
#
#   scripts/launch_tpu.sh --name NAME --zone ZONE --accelerator-type v5litepod-16 \
#       --repo GIT_URL [--branch main] [--version tpu-ubuntu2204-base] [--project P] [--create] [--spot] \
#       [--no-setup] [--dry-run] -- --config configs/default.py --workdir /mnt/shared/run [--config.key=value ...]
#
# Steps: (1) optionally create the TPU VM slice, (2) on every worker: clone/update the repo and pip install it
# with the TPU extra of jax, (3) on every worker at once: python -m jaxrl_reason.train with
# JAXRL_REASON_DISTRIBUTED=1, so jax.distributed.initialize() discovers the slice's hosts by itself.
# --dry-run prints the gcloud commands instead of running them. The workdir must be one directory shared by
# all workers (e.g. a Filestore/NFS mount or a gcsfuse-mounted bucket): Orbax writes each host's shards there.
set -euo pipefail

NAME="" ZONE="" ACCEL="" VERSION="tpu-ubuntu2204-base" PROJECT="" CREATE=0 DRY=0
REPO="" BRANCH="main" SPOT=0 SETUP_STEP=1
usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --name) NAME="$2"; shift 2 ;;
    --zone) ZONE="$2"; shift 2 ;;
    --accelerator-type) ACCEL="$2"; shift 2 ;;
    --version) VERSION="$2"; shift 2 ;;
    --project) PROJECT="$2"; shift 2 ;;
    --repo) REPO="$2"; shift 2 ;;
    --branch) BRANCH="$2"; shift 2 ;;
    --create) CREATE=1; shift ;;
    --spot) SPOT=1; shift ;;
    --dry-run) DRY=1; shift ;;
    --no-setup) SETUP_STEP=0; shift ;;
    -h|--help) usage; exit 0 ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (training arguments go after --)" >&2; exit 2 ;;
  esac
done
TRAIN_ARGS=("$@")
if [[ -z "$NAME" || -z "$ZONE" ]]; then echo "error: --name and --zone are required" >&2; exit 2; fi
if [[ $SETUP_STEP -eq 1 && -z "$REPO" ]]; then echo "error: --repo GIT_URL is required (or --no-setup)" >&2; exit 2; fi
if [[ $CREATE -eq 1 && -z "$ACCEL" ]]; then echo "error: --create needs --accelerator-type" >&2; exit 2; fi
if [[ ${#TRAIN_ARGS[@]} -eq 0 ]]; then
  echo "error: give the training arguments after --, e.g. -- --config configs/default.py --workdir gs://b/run" >&2
  exit 2
fi

GCLOUD=(gcloud compute tpus tpu-vm)
COMMON=(--zone "$ZONE")
[[ -n "$PROJECT" ]] && COMMON+=(--project "$PROJECT")

run() {  # print (dry run) or execute one command
  if [[ $DRY -eq 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

if [[ $CREATE -eq 1 ]]; then
  CREATE_ARGS=(create "$NAME" "${COMMON[@]}" --accelerator-type "$ACCEL" --version "$VERSION")
  [[ $SPOT -eq 1 ]] && CREATE_ARGS+=(--spot)
  run "${GCLOUD[@]}" "${CREATE_ARGS[@]}"
fi

SETUP="set -e; if [ -d jaxrl_reason ]; then git -C jaxrl_reason fetch -q && git -C jaxrl_reason checkout -q $BRANCH \
&& git -C jaxrl_reason pull -q; else git clone -q -b $BRANCH $REPO jaxrl_reason; fi; \
python3 -m pip install -q -U 'jax[tpu]' && python3 -m pip install -q -e './jaxrl_reason[tfds]'"
[[ $SETUP_STEP -eq 1 ]] && run "${GCLOUD[@]}" ssh "$NAME" "${COMMON[@]}" --worker=all --command "$SETUP"

QUOTED_ARGS=$(printf '%q ' "${TRAIN_ARGS[@]}")
TRAIN="cd jaxrl_reason && JAXRL_REASON_DISTRIBUTED=1 python3 -m jaxrl_reason.train --no-progress $QUOTED_ARGS"
run "${GCLOUD[@]}" ssh "$NAME" "${COMMON[@]}" --worker=all --command "$TRAIN"
