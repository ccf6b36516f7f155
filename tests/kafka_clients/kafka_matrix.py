"""The Kafka client matrix: which clients, the plans they run, how they run.

Each client lives in a virtualenv of its own under ``.venv-clients/`` (built
by ``make clients`` from tests/kafka_clients/requirements/NAME.txt) and runs
its family's scenario script (tests/kafka_clients/scenarios/) as a child
process: the plan goes in as JSON on stdin, the results come back as JSON on
stdout. A missing virtualenv fails the test that needs it, saying how to make
it; nothing is skipped.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import ROOT, BrokerProcess

from tailrace.client.records import iter_headers

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
CLIENTS_DIR = ROOT / ".venv-clients"
#: a scenario's whole run, every step; the steps' own waits are shorter
RUN_TIMEOUT_S = 240.0

CODEC_IDS = {"none": 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
ALL_CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


@dataclass(frozen=True)
class Client:
    """One row of the matrix."""

    name: str  # the virtualenv and requirements file
    script: str  # the scenario script of its family
    #: what the client raises or reports when an ACL refuses a produce
    authorization_error: str
    codecs: tuple[str, ...] = tuple(ALL_CODECS)
    #: the codecs its batches reach the broker with (None: all of ``codecs``)
    codecs_sent: tuple[str, ...] | None = None
    idempotent: bool = True

    @property
    def python(self) -> Path:
        return CLIENTS_DIR / self.name / "bin" / "python"


CLIENTS = [
    Client("confluent-kafka-2.16", "confluent_scenario.py", "TOPIC_AUTHORIZATION_FAILED"),
    # librdkafka before the fix of confluentinc/librdkafka#4956 enables gzip,
    # snappy and lz4 only when the broker advertises Produce v0 (Fetch v2 for
    # lz4), and sends those batches uncompressed otherwise ("Broker does not
    # support compression type gzip: not compressing batch"), as it does with
    # Apache Kafka 4, which dropped those versions (KIP-896) like tailrace
    # (docs/kafka.md). Its records still round-trip; zstd is compressed.
    Client(
        "confluent-kafka-2.0",
        "confluent_scenario.py",
        "TOPIC_AUTHORIZATION_FAILED",
        codecs_sent=("none", "zstd"),
    ),
    Client("kafka-python-2.3", "kafka_python_scenario.py", "TopicAuthorizationFailedError"),
    Client("kafka-python-3", "kafka_python_scenario.py", "TopicAuthorizationFailedError"),
    Client("aiokafka-0.14", "aiokafka_scenario.py", "TopicAuthorizationFailedError"),
]
CLIENT_IDS = [c.name for c in CLIENTS]


def require_venv(client: Client) -> None:
    if not client.python.exists():
        raise AssertionError(
            f"the {client.name} client is not installed ({client.python} is missing): "
            "run `make clients` (it builds .venv-clients/ from "
            "tests/kafka_clients/requirements/)"
        )


def _value(i: int) -> bytes:
    # compressible (every codec then really compresses: librdkafka sends a
    # batch uncompressed when compressing does not make it smaller) and not
    # UTF-8, so a client that decodes text would show
    return f"value-{i:03d}|".encode() + b"\xff\x00\x80tailrace-" * 6


def make_records(
    codecs: list[str], partitions: int, per_codec: int, base_ts: int
) -> list[dict[str, Any]]:
    """Records to produce, in order: ``per_codec`` for each codec in turn,
    partitions round robin, timestamps increasing by one second."""
    records = []
    for c, codec in enumerate(codecs):
        for j in range(per_codec):
            i = c * per_codec + j
            headers: list[list[Any]] = []
            if i % 2 == 0:
                headers = [["trace", f"t-{i}".encode().hex()], ["dup", "01"], ["dup", "02"]]
            if i % 5 == 1:
                headers.append(["empty", ""])
            records.append(
                {
                    "partition": i % partitions,
                    "key": None if i % 7 == 3 else f"key-{i}".encode().hex(),
                    "value": "" if i % 11 == 4 else _value(i).hex(),
                    "headers": headers,
                    "timestamp": base_ts + 1000 * i,
                    "codec": codec,
                }
            )
    return records


def expected_offsets(
    records: list[dict[str, Any]], start: dict[int, int] | None = None
) -> list[int]:
    """The offset each record gets: they are produced in order, per partition."""
    next_offset = dict(start or {})
    out = []
    for r in records:
        p = r["partition"]
        out.append(next_offset.get(p, 0))
        next_offset[p] = out[-1] + 1
    return out


def as_consumed(records: list[dict[str, Any]], offsets: list[int]) -> list[dict[str, Any]]:
    """``records`` as a consumer must return them."""
    return [
        {
            "partition": r["partition"],
            "offset": o,
            "key": r["key"],
            "value": r["value"],
            "headers": r["headers"],
            "timestamp": r["timestamp"],
        }
        for r, o in zip(records, offsets, strict=True)
    ]


def make_plan(
    client: Client,
    bootstrap: str,
    topic: str,
    steps: list[str],
    *,
    partitions: int = 3,
    per_codec: int = 8,
    codecs: list[str] | None = None,
    security: dict[str, Any] | None = None,
    user: dict[str, str] | None = None,
    base_ts: int | None = None,
) -> dict[str, Any]:
    codecs = list(codecs or client.codecs)
    if base_ts is None:
        # an hour ago, whole seconds: recent enough for any timestamp rule
        base_ts = (int(time.time()) - 3600) * 1000
    records = make_records(codecs, partitions, per_codec, base_ts)
    offsets = expected_offsets(records)
    n = len(records)
    # one query per partition: just before its middle record's timestamp
    queries = []
    for p in range(partitions):
        mine = [(r, o) for r, o in zip(records, offsets, strict=True) if r["partition"] == p]
        r, o = mine[len(mine) // 2]
        queries.append({"partition": p, "timestamp": r["timestamp"] - 1, "offset": o})
    tail = [
        {
            "partition": p,
            "key": f"tail-{p}".encode().hex(),
            "value": f"tail value {p}".encode().hex(),
            "headers": [["tail", "ff"]],
            "timestamp": base_ts + 1000 * (n + p),
            "codec": "none",
        }
        for p in range(partitions)
    ]
    return {
        "bootstrap": bootstrap,
        "client_id": f"matrix-{client.name}",
        "topic": topic,
        "group": f"{topic}-group",
        "partitions": partitions,
        "steps": steps,
        "codecs": codecs,
        "idempotent": client.idempotent,
        "records": records,
        "time_queries": [
            {"partition": q["partition"], "timestamp": q["timestamp"]} for q in queries
        ],
        "expected_time_offsets": {str(q["partition"]): q["offset"] for q in queries},
        "beyond_timestamp": base_ts + 1000 * (n + 1000),
        "tail": tail,
        "security": security,
        "user": user,
    }


@dataclass
class ScenarioRun:
    """One scenario script running as a child process, waited for on a thread."""

    client: Client
    plan: dict[str, Any]
    results: dict[str, Any] | None = None
    stderr: str = ""
    returncode: int | None = None
    seconds: float = 0.0
    failure: str | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> ScenarioRun:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        if not self.client.python.exists():
            self.failure = f"{self.client.python} is missing: run `make clients`"
            return
        started = time.monotonic()
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        proc = subprocess.Popen(
            [str(self.client.python), str(SCENARIOS / self.client.script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=SCENARIOS,
        )
        try:
            out, err = proc.communicate(json.dumps(self.plan), timeout=RUN_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            self.failure = f"no result after {RUN_TIMEOUT_S:.0f} s (killed)"
        self.seconds = time.monotonic() - started
        self.stderr = err
        self.returncode = proc.returncode
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if lines:
            self.results = json.loads(lines[-1])
        elif self.failure is None:
            self.failure = f"no JSON on stdout (exit {proc.returncode}): {out[-2000:]!r}"

    def wait(self) -> ScenarioRun:
        assert self._thread is not None
        self._thread.join()
        return self

    def describe(self) -> str:
        tail = "\n".join(self.stderr.splitlines()[-60:])
        return (
            f"{self.client.name} ({self.client.script}), exit {self.returncode}, "
            f"{self.seconds:.1f} s; stderr (last lines):\n{tail}"
        )

    def step(self, name: str) -> Any:
        """That step's results; an AssertionError telling why there are none."""
        self.wait()
        require_venv(self.client)
        if self.failure is not None:
            raise AssertionError(f"{self.failure}\n{self.describe()}")
        assert self.results is not None
        steps = self.results["steps"]
        if name not in steps:
            error = self.results.get("error")
            if error is not None:
                raise AssertionError(
                    f"step {name!r} not reached: step {error['step']!r} failed with "
                    f"{error['type']}: {error['message']}\n{error['trace']}\n{self.describe()}"
                )
            raise AssertionError(f"step {name!r} was not in the plan: {self.plan['steps']}")
        return steps[name]


def stored_codecs(data_dir: Path, topic: str) -> dict[int, set[str]]:
    """Partition -> the compression codecs of the batches stored on disk."""
    names = {v: k for k, v in CODEC_IDS.items()}
    out: dict[int, set[str]] = {}
    for path in glob.glob(str(data_dir / topic / "*" / "*.log")):
        partition = int(Path(path).parent.name)
        data = Path(path).read_bytes()
        for _, header in iter_headers(data):
            out.setdefault(partition, set()).add(names.get(header.attributes & 7, "?"))
    return out


def start_kafka_broker(data_dir: Path, *args: str) -> BrokerProcess:
    """``tailrace broker`` on loopback port 0 with a Kafka listener: pass
    ``--kafka-listen 127.0.0.1:0`` or a ``--config`` that has one."""
    proc = BrokerProcess(data_dir, *args, listen=None if "--config" in args else "127.0.0.1:0")
    proc.start()
    try:
        proc.kafka_address()
    except BaseException:
        proc.kill()
        raise
    return proc


def stop(proc: BrokerProcess) -> None:
    """SIGTERM (a clean stop), SIGKILL if it does not stop."""
    try:
        proc.terminate()
    finally:
        proc.kill()
