"""`pullctl sync` at scale: N generated sources against the Kubernetes API emulator (loopback, official client).

Not a test: it prints figures. For each phase, the wall time and the API requests the emulator saw, by verb:

    first sync      everything is created (1000 objects for 500 sources)
    resync          nothing changed: the target is the list calls only (one per kind and page of 500)
    one change      one source's request changed: its ConfigMap alone is applied
    new image       every CronJob changes, no ConfigMap does

    .venv/bin/python bench/sync_bench.py                 # 500 sources
    .venv/bin/python bench/sync_bench.py --sources 2000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pullctl.schedulers.kubernetes.options import RenderOptions
from pullctl.schedulers.kubernetes.sources import render_configs
from pullctl.schedulers.kubernetes.sync import sync_configs
from tests.emulators.kube import KubeEmulator

SOURCE = """\
source_id: {source_id}
ingestion:
  schedule: "{minute} {hour} * * *"
  timezone: Europe/Berlin
  request:
    base_url: https://api.example.com/v1/{source_id}
    auth_type: bearer
    secret_store: secretstore
    secret_key: token-{group}
    parameters: {{since: "{{window.start}}", page_size: {page_size}}}
  iteration:
    foreach: region
    items: [{{id: north}}, {{id: south}}, {{id: east}}, {{id: west}}]
    shards: {shards}
"""


def write_sources(folder: Path, count: int) -> None:
    for i in range(count):
        source_id = f"bench-{i:05d}"
        (folder / f"{source_id}.yaml").write_text(
            SOURCE.format(
                source_id=source_id,
                minute=i % 60,
                hour=i % 24,
                group=i % 10,
                page_size=100,
                shards=1 + i % 3,
            )
        )


def phase(emulator: KubeEmulator, label: str, run: object) -> None:
    emulator.reset_log()
    started = time.perf_counter()
    result = run()  # type: ignore[operator]
    seconds = time.perf_counter() - started
    verbs = Counter(r.verb for r in emulator.requests)
    by_verb = ", ".join(f"{verb} {n}" for verb, n in sorted(verbs.items()))
    counts = result.counts()
    plan = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    print(
        f"{label:<12} {seconds:7.2f} s  {len(emulator.requests):5d} requests ({by_verb})  plan: {plan}",
        flush=True,
    )
    if result.failed:
        print(f"  first failure: {result.failed[0].ref}: {result.failed[0].error}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sources", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, KubeEmulator() as emulator:
        configs = Path(tmp) / "configs"
        configs.mkdir()
        write_sources(configs, args.sources)
        kubeconfig = emulator.write_kubeconfig(Path(tmp) / "kubeconfig", context="bench", namespace="pulls")
        options = RenderOptions(image="ghcr.io/example/pullctl:1.0.0")

        started = time.perf_counter()
        objects = render_configs(str(configs), options)
        print(
            f"{args.sources} sources -> {len(objects)} objects; load + render {time.perf_counter() - started:.2f} s"
        )

        def sync(opts: RenderOptions = options) -> object:
            return sync_configs(str(configs), opts, kubeconfig=str(kubeconfig))

        phase(emulator, "first sync", sync)
        phase(emulator, "resync", sync)
        changed = configs / "bench-00007.yaml"
        changed.write_text(changed.read_text().replace("page_size: 100", "page_size: 200"))
        phase(emulator, "one change", sync)
        phase(emulator, "new image", lambda: sync(RenderOptions(image="ghcr.io/example/pullctl:1.0.1")))


if __name__ == "__main__":
    main()
