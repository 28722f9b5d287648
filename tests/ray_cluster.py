"""`manifold batch` on a Ray cluster, with a node killed mid-run.

usage: python tests/ray_cluster.py path/to/manifold WORK_DIR
       python tests/ray_cluster.py path/to/manifold WORK_DIR --bench [SONGS]

Starts a local Ray cluster on this machine: a head node (no CPUs, so it
only coordinates) and three worker nodes, each its own `ray start` with its
own raylet process. Renders a generated library of 12 songs with
cluster/ray_batch.py (stems), kills one worker node (its raylet and every
process under it, `manifold` included, with SIGKILL) once that node has
finished part of its shard, and checks that:
- the job completes on the nodes left, with exit status 0;
- every input is rendered exactly once: one `done` record per input across
  all ledgers;
- the outputs are byte-identical to a single-machine `manifold batch` run;
- no temporary file is left, and a single-machine run over the cluster's
  output folder finds everything done.
Prints one line per check; exits 1 if any failed.

With --bench: no kill and no checks; SONGS (default 12) songs of 3-5 min,
rendered by one `manifold batch --jobs 2` and by the driver on a local
cluster of two 1-CPU worker nodes (the same two cores), and the times
printed as a table.
"""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
from scipy.io import wavfile

MANIFOLD, WORK = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
HERE = os.path.dirname(os.path.abspath(__file__))
DRIVER = os.path.join(HERE, "..", "cluster", "ray_batch.py")
RAY = os.path.join(os.path.dirname(sys.executable), "ray")
ENV = dict(os.environ, RAY_USAGE_STATS_ENABLED="0")
SONGS = 12
results = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    results.append(ok)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def song(path, seconds, seed):
    """A little band: bass, chords and a vibrato lead line, stereo 44.1 kHz."""
    rate = 44100
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    root = 45 + seed % 7
    bass = 0.3 * np.sin(2 * np.pi * 440 * 2 ** ((root - 69) / 12) * t)
    chord = sum(0.1 * np.sin(2 * np.pi * 440 * 2 ** ((root + 12 + k - 69) / 12) * t) for k in (0, 4, 7))
    f = 440 * 2 ** ((root + 24 - 69) / 12) * (1 + 0.01 * np.sin(2 * np.pi * 5 * t))
    lead = 0.2 * np.sin(2 * np.pi * np.cumsum(f) / rate) * (0.5 + 0.5 * np.sin(2 * np.pi * 0.5 * t))
    left = bass + chord + lead + 0.01 * rng.standard_normal(t.size)
    right = bass + 0.8 * chord + 1.2 * lead + 0.01 * rng.standard_normal(t.size)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    wavfile.write(path, rate, (np.stack([left, right], 1) * 0.7 * 32767).astype(np.int16))


def tree(root):
    """sha256 of every output file, by relative path (ledgers and summary left out)."""
    import hashlib
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            if f.startswith("manifold-ledger") or f.startswith("manifold-cluster-summary"):
                continue
            p = os.path.join(d, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


def processes():
    """{pid: (ppid, args)} of every process."""
    procs = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().replace(b"\0", b" ").decode(errors="replace")
            procs[int(pid)] = (ppid, args)
        except (OSError, IndexError, ValueError):
            pass
    return procs


def descendants(root, procs):
    out, frontier = [], [root]
    while frontier:
        p = frontier.pop()
        out.append(p)
        frontier.extend(c for c, (pp, _) in procs.items() if pp == p)
    return out


def ray_start(*args):
    subprocess.run([RAY, "start", "--object-store-memory=80000000", "--disable-usage-stats", *args],
                   check=True, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    lib, ref, out = (os.path.join(WORK, d) for d in ("library", "single", "cluster"))
    subprocess.run(["rm", "-rf", WORK], check=True)
    for i in range(SONGS):
        song(os.path.join(lib, f"artist{i % 3}", f"song{i:02d}.wav"), 8 + i % 5, i)

    # The single-machine run every cluster output must equal.
    single = subprocess.run([MANIFOLD, "batch", "stems", "--cpu", "-q", "--jobs", "2", lib, "-o", ref],
                            stderr=subprocess.PIPE, text=True)
    check(single.returncode == 0, f"single-machine run: {single.stderr.strip().splitlines()[-1:]}")
    want = tree(ref)
    check(len(want) == 2 * SONGS, f"single-machine run wrote {len(want)} stems")

    port = free_port()
    node_ports = [free_port() for _ in range(3)]
    try:
        ray_start("--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false")
        for p in node_ports:
            ray_start(f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--node-manager-port={p}")
        import ray
        ray.init(address=f"127.0.0.1:{port}", logging_level="WARNING", log_to_driver=False)
        node_of_port = {n["NodeManagerPort"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}
        ray.shutdown()
        check(all(p in node_of_port for p in node_ports), f"{len(node_of_port)} nodes up: the head and three workers")
        driver = subprocess.Popen([sys.executable, DRIVER, "--address", f"127.0.0.1:{port}", "--manifold", MANIFOLD,
                                   "--shards", "9", "stems", "--cpu", lib, "-o", out],
                                  env=ENV, stderr=subprocess.PIPE, text=True)

        # Wait until the victim node is rendering a shard that already has
        # a finished input, then kill the node: raylet, workers, manifold.
        victim_port = node_ports[0]
        killed, deadline = None, time.time() + 300
        while killed is None and time.time() < deadline and driver.poll() is None:
            procs = processes()
            raylet = next((pid for pid, (_, a) in procs.items() if "raylet/raylet" in a and f"--node_manager_port={victim_port}" in a), None)
            if raylet is not None:
                tree_pids = descendants(raylet, procs)
                for pid in tree_pids:
                    args = procs.get(pid, (0, ""))[1]
                    if " batch stems " in args and "--shard" in args:
                        shard = args.split("--shard ")[1].split()[0]
                        k, n = shard.split("/")
                        ledger = os.path.join(out, f"manifold-ledger.shard-{k}-of-{n}.jsonl")
                        # Best: the shard has finished an input (its retry must
                        # skip it). Shards hold 0-3 inputs, so do not wait for
                        # that past the first third of the job.
                        done_anywhere = sum(open(os.path.join(out, f)).read().count('"status":"done"')
                                            for f in os.listdir(out) if f.startswith("manifold-ledger")) if os.path.isdir(out) else 0
                        if (os.path.exists(ledger) and os.path.getsize(ledger) > 0) or done_anywhere >= SONGS // 3:
                            for p in tree_pids:
                                try:
                                    os.kill(p, signal.SIGKILL)
                                except ProcessLookupError:
                                    pass
                            killed = (shard, len(tree_pids), os.path.exists(ledger) and os.path.getsize(ledger) > 0)
                            break
            time.sleep(0.1)
        check(killed is not None, f"killed worker node on port {victim_port} mid-shard: shard {killed and killed[0]}, "
                                  f"{killed and killed[1]} processes, the shard had finished an input: {killed and killed[2]}")

        try:
            _, err = driver.communicate(timeout=600)
        except subprocess.TimeoutExpired:
            driver.kill()
            _, err = driver.communicate()
        check(driver.returncode == 0, f"the cluster job completed (exit {driver.returncode}): {err.strip().splitlines()[-1:]}")
        summary_path = os.path.join(out, "manifold-cluster-summary.json")
        summary = json.load(open(summary_path)) if os.path.exists(summary_path) else {}
        counts = summary.get("done_records_per_input", {})
        check(len(counts) == SONGS and all(c == 1 for c in counts.values()),
              f"every input rendered exactly once: {len(counts)} inputs, done records per input {sorted(set(counts.values()))}")
        got = tree(out)
        temps = [p for p in got if ".manifold-tmp-" in p]
        check(not temps, f"no temporary files left ({len(temps)})")
        same = {p: h for p, h in got.items() if p in want and want[p] == h}
        check(len(same) == len(want) and len(got) == len(want),
              f"byte-identical to the single-machine run: {len(same)} of {len(want)} files equal, {len(got)} written")
        victim = node_of_port.get(victim_port)
        killed_shard = int(killed[0].split("/")[0]) if killed else -1
        rerun = [r["node"] for r in summary.get("shard_runs", []) if r["shard"] == killed_shard]
        check(len(rerun) == 1 and rerun[0] != victim, f"the killed node's shard {killed_shard} was run again on another node")
        again = subprocess.run([MANIFOLD, "batch", "stems", "--cpu", "-q", lib, "-o", out], stderr=subprocess.PIPE, text=True)
        check(again.returncode == 0 and f"0 rendered, {SONGS} skipped" in again.stderr,
              f"a single-machine run over the cluster's output skips everything: {again.stderr.strip().splitlines()[:1]}")
    finally:
        subprocess.run([RAY, "stop", "--force"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failed = results.count(False)
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def bench(songs):
    lib, single_out, cluster_out = (os.path.join(WORK, d) for d in ("library", "single", "cluster"))
    subprocess.run(["rm", "-rf", WORK], check=True)
    seconds = 0
    for i in range(songs):
        length = 180 + (i * 53) % 121
        song(os.path.join(lib, f"artist{i % 3}", f"song{i:02d}.wav"), length, i)
        seconds += length
    started = time.time()
    subprocess.run([MANIFOLD, "batch", "stems", "--cpu", "-q", "--jobs", "2", "--threads", "1", lib, "-o", single_out], check=True)
    single = time.time() - started
    port = free_port()
    try:
        ray_start("--head", f"--port={port}", "--num-cpus=0", "--include-dashboard=false")
        for _ in range(2):
            ray_start(f"--address=127.0.0.1:{port}", "--num-cpus=1", f"--node-manager-port={free_port()}")
        started = time.time()
        subprocess.run([sys.executable, DRIVER, "--address", f"127.0.0.1:{port}", "--manifold", MANIFOLD,
                        "stems", "--cpu", lib, "-o", cluster_out], check=True, env=ENV)
        cluster = time.time() - started
    finally:
        subprocess.run([RAY, "stop", "--force"], env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    same = tree(single_out) == tree(cluster_out)
    print(f"\n## `manifold batch stems`: {songs} songs, {seconds / 60:.0f} min of 44.1 kHz stereo, this machine's 2 cores")
    print("| run | wall | files per hour | × real time |")
    print("|---|---|---|---|")
    for name, wall in (("one machine: `manifold batch --jobs 2`", single),
                       ("Ray: head + 2 worker nodes × 1 CPU, `cluster/ray_batch.py` (8 shards)", cluster)):
        print(f"| {name} | {wall:.1f} s | {songs * 3600 / wall:.0f} | {seconds / wall:.1f}× |")
    print(f"Ray / one machine wall time: {cluster / single:.2f}; outputs byte-identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    if "--bench" in sys.argv:
        rest = sys.argv[sys.argv.index("--bench") + 1:]
        sys.exit(bench(int(rest[0]) if rest else 12))
    sys.exit(main())
