"""The leak rules (bench/soak.sh's header says them in words): RSS and fds
after the warm-up, split into quarters, against the warm-up and the start."""

from .common import MIB


def mib(n):
    return f"{n / MIB:.1f} MiB"


def quarters(values):
    k = len(values) // 4
    return [values[i * k:(i + 1) * k] for i in range(4)] if k else []


def judge_leaks(soak, samples, base, quiet):
    """The leak rules (see bench/soak.sh). Returns summary lines."""
    warm = [s for s in samples if s["t"] < soak.warmup]
    post = [s for s in samples if s["t"] >= soak.warmup]
    lines = []
    if not warm or len(post) < 4:
        soak.fail("too short", "too few samples after the warm-up to judge leaks")
        return lines
    rss_ref = max(s["rss"] for s in warm)
    rss_last = max(s["rss"] for s in quarters(post)[-1])
    growth = rss_last - rss_ref
    if growth > 8 * MIB and growth > 0.2 * rss_ref:
        soak.fail("rss grew", f"RSS grew: {mib(rss_last)} in the last quarter, warm-up max {mib(rss_ref)}")
    rss_floors = [min(s["rss"] for s in q) for q in quarters(post)]
    if all(b > a for a, b in zip(rss_floors, rss_floors[1:])) and rss_floors[-1] - rss_floors[0] > 4 * MIB:
        soak.fail("rss floor rose", f"RSS floor rose in every quarter: {[mib(f) for f in rss_floors]}")
    fd_floors = [min(s["fds"] for s in q) for q in quarters(post)]
    if all(b > a for a, b in zip(fd_floors, fd_floors[1:])) and fd_floors[-1] - fd_floors[0] >= 8:
        soak.fail("fd floor rose", f"open fds floor rose in every quarter: {fd_floors}")
    if quiet["fds"] > base["fds"] + 2:
        soak.fail("fds leaked", f"open fds after the load stopped: {quiet['fds']}, "
                  f"at the start with the same clients: {base['fds']}")
    warm_end = warm[-1]
    lines.append(f"RSS    start {mib(base['rss'])}, warm-up end {mib(warm_end['rss'])} (warm-up max "
                 f"{mib(rss_ref)}), max after warm-up {mib(max(s['rss'] for s in post))}, "
                 f"last sample under load {mib(post[-1]['rss'])}, idle at the end {mib(quiet['rss'])}; "
                 f"quarter floors {', '.join(mib(f) for f in rss_floors)}")
    lines.append(f"fds    start {base['fds']}, warm-up end {warm_end['fds']}, max after warm-up "
                 f"{max(s['fds'] for s in post)}, last sample under load {post[-1]['fds']}, "
                 f"idle at the end {quiet['fds']}; quarter floors {', '.join(map(str, fd_floors))}")
    return lines

