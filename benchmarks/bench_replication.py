"""Replication, pre-copy and rollback figures, side by side with rsync, in one run.

    .venv/bin/python benchmarks/bench_replication.py [--size-mib 2048] [--dir /tmp]
        [--sections local,ssh,precopy,precopy-ssh,rollback]

1. full copy of a lab disk (one image file, ``--size-mib``) — MigrationBox vs rsync;
2. incremental round after rewriting 1 % of the blocks — bytes sent vs bytes changed,
   time — MigrationBox vs rsync's delta algorithm (``--no-whole-file``);
3. the same two over SSH: the disk read from a real OpenSSH server on loopback
   (``lab.sshd.SshServer``) through the Airflow SSH hook, block hashes computed at the
   source — against rsync pulling through the same server with the same key. Bytes on
   the wire are counted at the TCP socket for both (MigrationBox: its counting socket;
   rsync: ``ssh -o LogLevel=VERBOSE``'s "Transferred: sent, received" line), next to the
   bytes that changed. Loopback has no latency and no bandwidth limit, and source and
   target share the same two cores and disk: the times show CPU cost (encryption,
   hashing), not what a WAN link would allow; the byte counts carry over;
4. pre-copy under a steady write load (a real writer process) — the pause window, with
   dirty blocks found by scanning and by the writer's changed-block-tracking log; and
   (``precopy-ssh``) the same from a source behind the OpenSSH server: dirty blocks found
   by hashes computed at the source, the writer frozen by ``kill -STOP`` run on the source
   through the SSH connection (``details.freeze_command``), so the pause window holds one
   hash pass over the disk at the source plus the changed blocks on the wire;
5. time from a rollback trigger to 100 % source, through the canary controller against
   a real moto server (weighted Route 53 records written and read back).

rsync's times include a ``sync`` afterwards, since MigrationBox fsyncs what it writes
(its rounds must survive a crash). The data lives under ``--dir`` and is deleted at the
end. The page cache is dropped before each copy when the process may do so (root);
otherwise the note says so.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from migrationbox.lab.sshd import SshServer, sshd_available
from migrationbox.replication.disk import RoundStats, replicate_round, verify
from migrationbox.replication.manifest import MIB
from migrationbox.replication.precopy import precopy
from migrationbox.replication.source import open_source
from migrationbox.replication.writeload import WriteLoad

BLOCK = 1 * MIB
SSH_CONN_ID = "bench_source_ssh"
SECTIONS = ("local", "ssh", "precopy", "precopy-ssh", "rollback")


def drop_caches() -> bool:
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def make_disk(path: Path, size_mib: int) -> None:
    rng = random.Random(2026)
    with path.open("wb") as fh:
        for _ in range(size_mib):
            fh.write(rng.randbytes(MIB))


def change_blocks(path: Path, share: float, seed: int = 7) -> tuple[int, int]:
    """Rewrite ``share`` of the disk's blocks entirely; (blocks, bytes) changed."""
    rng = random.Random(seed)
    nblocks = path.stat().st_size // BLOCK
    picked = rng.sample(range(nblocks), max(1, int(nblocks * share)))
    with path.open("r+b") as fh:
        for b in picked:
            fh.seek(b * BLOCK)
            fh.write(rng.randbytes(BLOCK))
    return len(picked), len(picked) * BLOCK


def rsync(src: Path, dst: Path, delta: bool) -> tuple[float, int, int]:
    """(seconds, literal bytes, total bytes sent) of one rsync run, plus ``sync``."""
    args = ["rsync", "-a", "--stats", "--no-whole-file" if delta else "--whole-file",
            "--inplace", f"{src}/", f"{dst}/"]
    t0 = time.perf_counter()
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    os.sync()  # MigrationBox fsyncs what it writes; make rsync's data durable too
    took = time.perf_counter() - t0

    def num(label: str) -> int:
        m = re.search(label + r":\s*([\d,]+)", out)
        return int(m.group(1).replace(",", "")) if m else -1

    return took, num("Literal data"), num("Total bytes sent")


def rsync_over_ssh(server: SshServer, src: Path, dst: Path) -> tuple[float, int, int]:
    """(seconds, literal bytes, bytes on the wire both ways) of rsync pulling ``src``
    from ``server`` into ``dst`` (delta algorithm on, as for any remote rsync), + sync."""
    shell = " ".join([*server.ssh_command(), "-o", "LogLevel=VERBOSE"])
    args = ["rsync", "-a", "--stats", "--inplace", "-e", shell,
            f"{server.user}@{server.host}:{src}/", f"{dst}/"]
    t0 = time.perf_counter()
    run = subprocess.run(args, check=True, capture_output=True, text=True)
    os.sync()
    took = time.perf_counter() - t0
    wire = re.search(r"Transferred: sent (\d+), received (\d+) bytes", run.stderr)
    literal = re.search(r"Literal data:\s*([\d,]+)", run.stdout)
    return (took, int(literal.group(1).replace(",", "")) if literal else -1,
            int(wire.group(1)) + int(wire.group(2)) if wire else -1)


def ssh_round(server: SshServer, src: Path, dst: Path, round_no: int) -> tuple[float, RoundStats]:
    """One MigrationBox round from ``src`` on ``server`` (a new SSH connection, as rsync
    opens one), timed from opening the source to the fsynced manifest."""
    t0 = time.perf_counter()
    with open_source(f"ssh://{server.host}:{server.port}{src}",
                     {"ssh_conn_id": SSH_CONN_ID}, name="bench/disk") as tree:
        stats = replicate_round(tree, dst, round_no, BLOCK)
    return time.perf_counter() - t0, stats


def ssh_section(src: Path, root: Path, disk: Path, size: int) -> None:
    ok, why = sshd_available()
    if not ok:
        print(f"\n== over SSH: skipped ({why}) ==")
        return
    from airflow.providers.ssh.hooks.ssh import SSHHook  # noqa: F401  (import not timed)

    mdst, rdst = root / "mbx-ssh", root / "rsync-ssh"
    rdst.mkdir()
    with SshServer(root=root / "sshd") as server:
        conn = server.airflow_connection()
        conn["extra"]["compress"] = "false"  # as ssh's default: random data does not compress
        os.environ[f"AIRFLOW_CONN_{SSH_CONN_ID.upper()}"] = json.dumps(conn)
        drop_caches()
        m_full, full = ssh_round(server, src, mdst, 1)
        drop_caches()
        r_full, _lit, r_wire = rsync_over_ssh(server, src, rdst)
        print("\n== over SSH on loopback (OpenSSH server; MigrationBox via the Airflow SSH "
              "hook, rsync via ssh) ==")
        print("full copy:")
        print(f"  migrationbox: {m_full:6.2f}s  {size / MIB / m_full:7.1f} MiB/s  "
              f"on the wire {full.wire_bytes / MIB:8.2f} MiB  (data {full.bytes_sent / MIB:.0f} "
              f"MiB)")
        print(f"  rsync       : {r_full:6.2f}s  {size / MIB / r_full:7.1f} MiB/s  "
              f"on the wire {r_wire / MIB:8.2f} MiB")
        print(f"  ratio migrationbox/rsync time: {m_full / r_full:.2f}")

        blocks, changed = change_blocks(disk, 0.01, seed=8)
        drop_caches()
        m_inc, inc = ssh_round(server, src, mdst, 2)
        drop_caches()
        r_inc, r_lit, r_wire = rsync_over_ssh(server, src, rdst)
        print(f"incremental after rewriting 1% of blocks ({blocks} x 1 MiB = "
              f"{changed / MIB:.0f} MiB changed):")
        print(f"  migrationbox: {m_inc:6.2f}s  on the wire {inc.wire_bytes / MIB:7.2f} MiB  "
              f"wire/changed {inc.wire_bytes / changed:.3f}  (blocks read {inc.blocks_sent}, "
              f"hashes of {inc.blocks_total} blocks received)")
        print(f"  rsync       : {r_inc:6.2f}s  on the wire {r_wire / MIB:7.2f} MiB  "
              f"wire/changed {r_wire / changed:.3f}  (literal {r_lit / MIB:.2f} MiB)")
        print(f"  ratio migrationbox/rsync time: {m_inc / r_inc:.2f}; wire bytes: "
              f"{inc.wire_bytes / max(r_wire, 1):.2f}")
        with open_source(f"ssh://{server.host}:{server.port}{src}",
                         {"ssh_conn_id": SSH_CONN_ID}, name="bench/disk") as tree:
            same = verify(tree, mdst, BLOCK).ok
        same = same and disk.read_bytes() == (rdst / disk.name).read_bytes()
        print(f"  both targets equal the source (MigrationBox checked against hashes taken "
              f"at the source): {same}")
    print("  not covered: latency and bandwidth limits (loopback has neither), a source "
          "that is another machine (both ends share two cores and one disk)")


def precopy_ssh_section(src: Path, root: Path, disk: Path, write_rate: float) -> None:
    """Live migration of a source behind SSH: pre-copy rounds while a writer runs, then
    the freeze command on the source, the final delta, the thaw (``phases.live``)."""
    ok, why = sshd_available()
    if not ok:
        print(f"\n== pre-copy over SSH: skipped ({why}) ==")
        return
    from migrationbox.endpoints import Endpoint
    from migrationbox.phases.live import command_freeze

    dst = root / "mbx-live-ssh"
    with SshServer(root=root / "sshd-live") as server:
        conn = server.airflow_connection()
        conn["extra"]["compress"] = "false"
        os.environ[f"AIRFLOW_CONN_{SSH_CONN_ID.upper()}"] = json.dumps(conn)
        uri = f"ssh://{server.host}:{server.port}{src}"
        with WriteLoad(disk, write_rate, BLOCK) as load:
            time.sleep(0.5)
            assert load.proc is not None
            details = {"ssh_conn_id": SSH_CONN_ID,
                       "freeze_command": f"kill -STOP -- -{load.proc.pid}",
                       "thaw_command": f"kill -CONT -- -{load.proc.pid}"}
            with open_source(uri, details, name="bench/disk") as tree:
                fr = command_freeze(Endpoint("bench", "disk", "root", uri, f"file://{dst}",
                                             details), tree, "cutover")
                pre = precopy(tree, dst, fr.freeze, fr.thaw, BLOCK, threshold_bytes=8 * MIB,
                              max_rounds=8)
    s = pre.summary()
    first = pre.live_rounds[0]
    print(f"\n== pre-copy over SSH under {write_rate:g} block writes/s, dirty blocks by "
          "hashes computed at the source ==")
    print(f"live rounds {s['live_rounds']}: dirty MiB per round "
          f"{[round(b / MIB, 1) for b in s['dirty_bytes_per_round']]}, on the wire MiB "
          f"{[round(r.wire_bytes / MIB, 2) for r in pre.live_rounds]}, seconds "
          f"{s['round_seconds']}")
    final = pre.final_round
    assert final is not None
    freeze_s = next((c["seconds"] for c in fr.log if c["field"] == "freeze_command"), None)
    print(f"final round (frozen by a command over SSH, {freeze_s}s): "
          f"{final.bytes_sent / MIB:.1f} MiB, on the wire {final.wire_bytes / MIB:.2f} MiB; "
          f"downtime {pre.downtime_s:.3f}s vs full copy over SSH {first.seconds:.2f}s "
          f"(ratio {pre.downtime_s / first.seconds:.3f}); verified {pre.verified}; "
          f"stop: {s['stop_reason']}")


def rollback_timing(runs: int = 5) -> list[float]:
    from migrationbox.cloud.aws import AwsAdapter
    from migrationbox.cloud.aws_session import clear_client_cache
    from migrationbox.cloud.emulator import EmulatorProcess
    from migrationbox.cutover.controller import CanaryController, CanarySettings
    from migrationbox.cutover.metrics import CanaryMetrics
    from migrationbox.cutover.rules import RollbackRules

    class Svc:
        def __init__(self, i: int):
            self.record = f"svc{i}.bench.migrationbox.internal"
            self.source_value = f"10.0.0.{i + 10}"
            self.target_value = f"10.1.0.{i + 10}"

    with EmulatorProcess() as emu:
        os.environ["AIRFLOW_CONN_AWS_DEFAULT"] = emu.airflow_connection()
        clear_client_cache()
        adapter = AwsAdapter()
        zone = adapter.ensure_hosted_zone("bench.migrationbox.internal", {"bench": "1"})
        svcs = [Svc(i) for i in range(3)]
        ctl = CanaryController(adapter=adapter, zone_id=zone, services=svcs,
                               settings=CanarySettings(steps=[50]), rules=RollbackRules(),
                               metrics=CanaryMetrics(None, "bench", "bench"))
        out = []
        for _ in range(runs):
            ctl.set_all(50)
            t0 = time.perf_counter()
            _took, back = ctl.rollback_now()  # what the controller does on a trigger
            out.append(time.perf_counter() - t0)
            assert all(w == {"source": 100, "target": 0} for w in back.values()), back
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=2048)
    ap.add_argument("--dir", default="/tmp")
    ap.add_argument("--write-rate", type=float, default=100.0, help="blocks/s during pre-copy")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {', '.join(SECTIONS)}")
    args = ap.parse_args(argv)
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    if not sections <= set(SECTIONS):
        ap.error(f"--sections: unknown {sorted(sections - set(SECTIONS))}")
    if shutil.which("rsync") is None:
        print("rsync is not installed: apt-get install -y rsync", file=sys.stderr)
        return 2
    root = Path(tempfile.mkdtemp(prefix="mbx-bench-", dir=args.dir))
    try:
        src, dst, rdst = root / "src", root / "mbx", root / "rsync"
        src.mkdir()
        rdst.mkdir()
        disk = src / "disk.img"
        size = args.size_mib * MIB
        t0 = time.perf_counter()
        make_disk(disk, args.size_mib)
        print(f"lab disk: {args.size_mib} MiB written in {time.perf_counter() - t0:.1f}s "
              f"(block {BLOCK // MIB} MiB)")
        cold = drop_caches()
        print(f"page cache dropped before each copy: {'yes' if cold else 'no (not root)'}")

        full = None
        if "local" in sections:
            drop_caches()
            full = replicate_round(src, dst, 1, BLOCK)
            drop_caches()
            r_full, r_lit, r_sent = rsync(src, rdst, delta=False)
            print("\n== full copy ==")
            print(f"migrationbox: {full.seconds:6.2f}s  {size / MIB / full.seconds:7.1f} MiB/s  "
                  f"sent {full.bytes_sent / MIB:.0f} MiB")
            print(f"rsync       : {r_full:6.2f}s  {size / MIB / r_full:7.1f} MiB/s  "
                  f"sent {r_sent / MIB:.0f} MiB")
            print(f"ratio migrationbox/rsync time: {full.seconds / r_full:.2f}")

            blocks, changed = change_blocks(disk, 0.01)
            drop_caches()
            inc = replicate_round(src, dst, 2, BLOCK)
            drop_caches()
            r_inc, r_lit, r_sent = rsync(src, rdst, delta=True)
            print(f"\n== incremental round after rewriting 1% of blocks ({blocks} x 1 MiB) ==")
            print(f"migrationbox: {inc.seconds:6.2f}s  sent {inc.bytes_sent / MIB:7.2f} MiB  "
                  f"sent/changed {inc.bytes_sent / changed:.3f}")
            print(f"rsync delta : {r_inc:6.2f}s  sent {r_sent / MIB:7.2f} MiB (literal "
                  f"{r_lit / MIB:.2f} MiB)  sent/changed {r_sent / changed:.3f}")
            print(f"ratio migrationbox/rsync time: {inc.seconds / r_inc:.2f}; bytes: "
                  f"{inc.bytes_sent / max(r_sent, 1):.2f}")
            ok = verify(src, dst, BLOCK).ok and \
                disk.read_bytes() == (rdst / "disk.img").read_bytes()
            print(f"both targets equal the source: {ok}")

        if "ssh" in sections:
            ssh_section(src, root, disk, size)

        if "precopy" in sections and full is None:
            full = replicate_round(src, dst, 1, BLOCK)  # the baseline the ratios use

        if "precopy" in sections:
            assert full is not None
            for cbt in (False, True):
                with WriteLoad(disk, args.write_rate, BLOCK, cbt_root=src if cbt else None) as load:
                    time.sleep(0.5)
                    pre = precopy(src, dst, load.pause, load.resume, BLOCK,
                                  threshold_bytes=8 * MIB, max_rounds=8, cbt=cbt)
                s = pre.summary()
                how = "changed-block log" if cbt else "scan (hash every block)"
                print(f"\n== pre-copy under {args.write_rate:g} block writes/s, dirty blocks by "
                      f"{how} ==")
                print(f"live rounds {s['live_rounds']}: dirty MiB per round "
                      f"{[round(b / MIB, 1) for b in s['dirty_bytes_per_round']]}, seconds "
                      f"{s['round_seconds']}")
                print(f"final round (source paused): {s['final_bytes'] / MIB:.1f} MiB; downtime "
                      f"{pre.downtime_s:.3f}s vs full copy {full.seconds:.2f}s "
                      f"(ratio {pre.downtime_s / full.seconds:.3f}); verified {pre.verified}; "
                      f"stop: {s['stop_reason']}")
        if "precopy-ssh" in sections:
            precopy_ssh_section(src, root, disk, args.write_rate)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    if "rollback" in sections:
        times = rollback_timing()
        print("\n== rollback trigger -> 100% source (3 weighted records, moto Route 53) ==")
        print(f"median {statistics.median(times) * 1000:.0f} ms, max "
              f"{max(times) * 1000:.0f} ms over {len(times)} runs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
