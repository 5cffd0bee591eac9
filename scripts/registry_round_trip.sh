#!/usr/bin/env bash
# The registry's round trip against a running service (`make run`), with curl:
#   scripts/registry_round_trip.sh [BASE_URL] [MODEL_FILE] [IMAGE] [SECOND_MODEL_FILE]
# registers MODEL_FILE as a new version of "demo", runs a job on it by name@version, shows the
# job's recorded model, is refused a delete while the job runs, is refused a file that is not a
# model; with SECOND_MODEL_FILE it registers that as the next version, routes jobs naming
# "demo" 50/50 between the two, sends 40 and counts the split, then picks again from the same
# job ids (the routing is a function of the job id) and compares.
# Send an API key with NESYDET_API_KEY=... when accounts are on (it must be an admin's).
set -euo pipefail
BASE=${1:-http://localhost:8000}
MODEL=${2:-models/nesydet-demo-obb.pt}
IMAGE=${3:-}
SECOND=${4:-}
AUTH=(); [ -n "${NESYDET_API_KEY:-}" ] && AUTH=(-H "X-API-Key: $NESYDET_API_KEY")
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))" "$1"; }
say() { printf '\n== %s\n' "$*"; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
if [ -z "$IMAGE" ]; then
  IMAGE=$work/scene.png
  python3 -c "import zlib,struct,sys
w=h=2048; raw=b''.join(b'\0'+bytes((x*7+y*3)%256 for x in range(w*3)) for y in range(h))
c=lambda t,d: struct.pack('>I',len(d))+t+d+struct.pack('>I',zlib.crc32(t+d))
sys.stdout.buffer.write(b'\x89PNG\r\n\x1a\n'+c(b'IHDR',struct.pack('>IIBBBBB',w,h,8,2,0,0,0))+c(b'IDAT',zlib.compress(raw))+c(b'IEND',b''))" > "$IMAGE"
fi

say "register $MODEL as demo (next version)"
curl -sS "${AUTH[@]}" -F "file=@$MODEL" -F name=demo "$BASE/api/v1/models" | tee "$work/v.json" \
  | json 'd.get("data", d)'
V=$(json 'd["data"]["version"]' < "$work/v.json")
say "list"
curl -sS "${AUTH[@]}" "$BASE/api/v1/models" | json '[(m["name"], m["default_version"], m["version_count"]) for m in d["data"]["items"]]'
UP=$(curl -sS "${AUTH[@]}" -F "files=@$IMAGE" "$BASE/api/v1/inference/upload" | json 'd["data"]["upload_id"]')
say "a job on demo@$V"
JOB=$(curl -sS "${AUTH[@]}" -H 'content-type: application/json' \
  -d "{\"upload_id\": \"$UP\", \"config\": {\"model\": \"demo@$V\"}}" \
  "$BASE/api/v1/inference/predict" | json 'd["data"]["job_id"]')
curl -sS "${AUTH[@]}" "$BASE/api/v1/jobs/$JOB/status" | json '(d["data"]["status"], d["data"]["model"])'
say "delete demo@$V while $JOB is queued or running"
curl -sS "${AUTH[@]}" -X DELETE -w ' HTTP %{http_code}\n' "$BASE/api/v1/models/demo/versions/$V"
say "a file that is not a model"
head -c 4096 /dev/urandom > "$work/junk.pt"
curl -sS "${AUTH[@]}" -F "file=@$work/junk.pt" -F name=junk -w ' HTTP %{http_code}\n' "$BASE/api/v1/models"
say "the job's recorded model once it has finished"
for _ in $(seq 120); do
  s=$(curl -sS "${AUTH[@]}" "$BASE/api/v1/jobs/$JOB/status" | json 'd["data"]["status"]')
  [ "$s" = completed ] || [ "$s" = failed ] && break; sleep 1
done
curl -sS "${AUTH[@]}" "$BASE/api/v1/jobs/$JOB/status" | json '(d["data"]["status"], d["data"]["model"], d["data"].get("rules"))'

[ -z "$SECOND" ] && exit 0
say "A/B: $SECOND as the next version of demo, routing 50/50, 40 jobs naming demo"
V2=$(curl -sS "${AUTH[@]}" -F "file=@$SECOND" -F name=demo "$BASE/api/v1/models" | json 'd["data"]["version"]')
curl -sS "${AUTH[@]}" -X PUT -H 'content-type: application/json' -d "{\"$V\": 50, \"$V2\": 50}" \
  "$BASE/api/v1/models/demo/routing" | json 'd["data"]["routing"]'
light='"sahi": {"enabled": false}, "symbolic_reasoning": {"enabled": false}'
for _ in $(seq 40); do
  curl -sS "${AUTH[@]}" -H 'content-type: application/json' \
    -d "{\"upload_id\": \"$UP\", \"config\": {\"model\": \"demo\", $light}}" \
    "$BASE/api/v1/inference/predict" | json 'd["data"]["job_id"] + " " + d["data"]["config"]["model"]'
done > "$work/ab.txt"
cut -d' ' -f2 "$work/ab.txt" | sort | uniq -c
say "the same job ids picked again (nesydet.asset_names.pick_version)"
"${PYTHON:-.venv/bin/python}" - "$work/ab.txt" "$V" "$V2" <<'PY'
import collections, sys
from nesydet.asset_names import pick_version
rows = [line.split() for line in open(sys.argv[1])]
weights = {sys.argv[2]: 50, sys.argv[3]: 50}
again = [f"demo@{pick_version(weights, job)}" for job, _ in rows]
print(collections.Counter(again), "identical:", again == [m for _, m in rows])
PY
curl -sS "${AUTH[@]}" "$BASE/api/v1/models/demo" | json '[(v["version"], v["jobs"]) for v in d["data"]["versions"]]'
curl -sS "$BASE/metrics" | grep '^model_jobs_total{model="demo"'
