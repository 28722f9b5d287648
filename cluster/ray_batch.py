"""Runs `manifold batch` across the machines of a Ray cluster.

usage: python cluster/ray_batch.py [--address auto] [--manifold PATH]
           [--shards N] [--cpus-per-shard C] [--retries R]
           TASK [TASK OPTIONS] INPUT... -o OUT_DIR

TASK and its options are those of `manifold batch` (stems, clean, convert,
isolate). The inputs and OUT_DIR must be the same paths on every node (shared
storage), and the `manifold` binary with its models must be installed on
every node (--manifold, default: `manifold` on PATH).

The work stays in the `manifold` binary. This driver splits the inputs into
N shards by a stable hash of each input's output name (`manifold batch
--shard K/N`, so every node computes the same split from the same folder),
runs one Ray task per shard, and gathers the ledgers. Each shard writes its
own ledger in OUT_DIR and reads everybody's, with the single-machine rules:
what is done is skipped, what failed is tried again, outputs appear under
their final names only when complete. A node that dies takes its running
shards with it (their `manifold` processes are killed with the Ray worker);
Ray runs those shards again on the nodes left, which skip what the dead node
had finished. Running the driver again resumes a whole interrupted job.

Exit status: 0 when every input is done, 3 when some failed (reasons
printed and in OUT_DIR/manifold-cluster-summary.json), 1 when the job could
not run.
"""

import argparse
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time

import ray

PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """In the child before exec: SIGKILL it when the Ray worker that
    started it dies (a killed node must not leave renders running)."""
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@ray.remote(max_retries=-1, retry_exceptions=False)
def run_shard(manifold, task_argv, index, count, jobs):
    """One shard on whichever node Ray chose. Runs on a Ray worker."""
    argv = [manifold, "batch", task_argv[0], "--shard", f"{index}/{count}",
            "--jobs", str(jobs), "--threads", "1", "-q"] + task_argv[1:]
    started = time.time()
    done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, preexec_fn=_die_with_parent)
    if done.returncode not in (0, 3):
        # The batch could not run at all (missing models, bad options, the
        # output folder unwritable): no retry helps.
        raise RuntimeError(f"shard {index}/{count} on {socket.gethostname()}: "
                           f"manifold exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return {"shard": index, "host": socket.gethostname(), "node": ray.get_runtime_context().get_node_id(),
            "seconds": time.time() - started, "status": done.returncode,
            "summary": done.stderr.strip().splitlines()[-1:] if done.stderr.strip() else []}


def output_dir(task_argv):
    for i, a in enumerate(task_argv):
        if a in ("-o", "--output") and i + 1 < len(task_argv):
            return task_argv[i + 1]
        if a.startswith("--output="):
            return a.split("=", 1)[1]
    sys.exit("ray_batch: the task needs -o OUT_DIR (on storage every node sees)")


def gather_ledgers(out_dir):
    """The latest record of every input across all ledger files, and how
    many records said `done` for each (the cluster test wants exactly one)."""
    latest, done_count = {}, {}
    for name in sorted(os.listdir(out_dir)):
        if not (name.startswith("manifold-ledger") and name.endswith(".jsonl")):
            continue
        with open(os.path.join(out_dir, name), encoding="utf-8") as f:
            for line in f:
                try:
                    r = json.loads(line)
                except ValueError:
                    continue  # a line torn by a kill
                if r.get("status") == "done":
                    done_count[r["name"]] = done_count.get(r["name"], 0) + 1
                old = latest.get(r["name"])
                if old is None or old["finished_ms"] <= r["finished_ms"]:
                    latest[r["name"]] = r
    return latest, done_count


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", default="auto", help="Ray cluster address (default: auto)")
    parser.add_argument("--manifold", default="manifold", help="the manifold binary, same path on every node")
    parser.add_argument("--shards", type=int, default=0,
                        help="shards (default: 4 per CPU the cluster has, so a lost node costs little)")
    parser.add_argument("--cpus-per-shard", type=int, default=1,
                        help="CPUs Ray reserves for a shard; the shard renders that many files at once")
    parser.add_argument("task", nargs=argparse.REMAINDER, help="TASK [TASK OPTIONS] INPUT... -o OUT_DIR")
    args = parser.parse_args()
    if not args.task:
        parser.error("give a task: stems, clean, convert or isolate, with its inputs and -o OUT_DIR")
    out_dir = output_dir(args.task)

    ray.init(address=args.address, logging_level="WARNING", log_to_driver=False)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    shards = args.shards or max(1, 4 * cpus // args.cpus_per_shard)
    print(f"ray_batch: {len(ray.nodes())} nodes, {cpus} CPUs; {shards} shards of `manifold batch {args.task[0]}`",
          file=sys.stderr)
    started = time.time()
    pending = [run_shard.options(num_cpus=args.cpus_per_shard).remote(args.manifold, args.task, k, shards, args.cpus_per_shard)
               for k in range(shards)]
    results, shard_errors = [], []
    while pending:
        ready, pending = ray.wait(pending, num_returns=1)
        for r in ready:
            try:
                results.append(ray.get(r))
            except Exception as e:  # a shard that could not run: say why, keep the others
                shard_errors.append(str(e).strip().splitlines()[-1])
        print(f"ray_batch: {len(results) + len(shard_errors)} of {shards} shards finished", file=sys.stderr)

    latest, done_count = gather_ledgers(out_dir)
    failed = {n: r for n, r in latest.items() if r["status"] != "done"}
    by_host = {}
    for r in latest.values():
        if r["status"] == "done":
            by_host[r["host"]] = by_host.get(r["host"], 0) + 1
    summary = {
        "shards": shards,
        "seconds": time.time() - started,
        "done": sum(1 for r in latest.values() if r["status"] == "done"),
        "failed": {n: {"input": r["input"], "error": r["error"]} for n, r in failed.items()},
        "done_records_per_input": done_count,
        "audio_seconds": sum(r["audio_seconds"] for r in latest.values() if r["status"] == "done"),
        "shard_runs": results,
        "shard_errors": shard_errors,
        "done_by_host": by_host,
    }
    with open(os.path.join(out_dir, "manifold-cluster-summary.json.tmp"), "w", encoding="utf-8") as f:
        json.dump(summary, f, indent=1, sort_keys=True)
    os.replace(os.path.join(out_dir, "manifold-cluster-summary.json.tmp"), os.path.join(out_dir, "manifold-cluster-summary.json"))
    print(f"ray_batch: {summary['done']} done, {len(failed)} failed in {summary['seconds']:.1f} s "
          f"({summary['audio_seconds']:.1f} s of audio); summary in {out_dir}/manifold-cluster-summary.json", file=sys.stderr)
    for n, r in sorted(failed.items()):
        print(f"  failed: {r['input']}: {r['error']}", file=sys.stderr)
    for e in shard_errors:
        print(f"  shard could not run: {e}", file=sys.stderr)
    if shard_errors:
        return 1
    return 3 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
