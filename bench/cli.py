"""`python -m bench`: every measurement in one run, a table on stdout, JSON + PNG in bench/results/."""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path

import click

from metalstream.errors import MetalstreamError

from . import build, deploy, host, serve
from .large_image import make_large_image
from .stats import figure, goal, median_of_phases, ratio

REPO = Path(__file__).resolve().parents[1]
SECTIONS = ("deploy", "serve", "memory", "build", "fleet", "ks_lint", "peers", "installer")
CLIENT_COUNTS = (1, 4, 16)
SERVE_ROUNDS_PER_RUN = 3


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--runs", type=click.IntRange(1, 50), default=3, show_default=True,
              help="Runs per figure (each figure is their median, with min and max).")
@click.option("--only", "only", type=click.Choice(SECTIONS), multiple=True,
              help="Run only these sections (repeatable); the result then goes to bench/results/tmp/.")
@click.option("--kickstart", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=REPO / "kickstarts/debian-minimal.ks", show_default=True)
@click.option("--image-dir", type=click.Path(file_okay=False, path_type=Path), default=REPO / "out",
              show_default=True, help="Where the image is built, or reused if its kickstart is unchanged.")
@click.option("--large-size", type=click.IntRange(1), default=2048, show_default=True,
              help="Compressed size in MiB of the large image for the memory benchmark.")
@click.option("--work", type=click.Path(file_okay=False, path_type=Path), default=Path("/var/tmp/metalstream-bench"),
              show_default=True, help="Scratch space: disk images (8 GiB sparse), the large image, builds.")
@click.option("--machines", type=click.IntRange(1, 5000), default=1000, show_default=True,
              help="Simulated machines per setup in the fleet section.")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Result JSON (default: bench/results/latest.json for a full run; the PNG goes beside it).")
def main(runs, only, kickstart, image_dir, large_size, work, machines, output) -> None:
    """Measure metalstream against the alternatives, side by side on this machine:

    \b
      deploy  metalstream install vs a package install of the same kickstart (ratio, goal >= 10x)
              and vs the bare `zstd -dc | tar -x` + sync (ratio, goal <= 1.10x), with phase times
      serve   1, 4 and 16 concurrent downloads: metalstream serve vs nginx (goal >= 0.9x at 16)
      memory  the agent's peak RSS deploying the small and a large image (goal <= 100 MB)
      build   cold build vs cached rebuild of the unchanged kickstart; sha256 equal?
      fleet   --machines simulated machines deploying at once (lab.fleet) on SQLite x1, PostgreSQL x1
              and PostgreSQL x3 replicas behind nginx: latency per endpoint, errors, CPU, RSS
              (goal: 0 failures, agent p99 <= 100 ms on PostgreSQL x3)
      ks_lint metalstream ks lint on 100 kickstarts in one call vs ksvalidator once per file (goal <= 1.5x)
      peers   metalstream install vs curtin/MAAS tgz and Ironic whole-disk images (qcow2, qcow2 -c, raw.zst),
              locally and through tc-shaped 1 and 10 Gbit/s links (goal: fastest, fewest bytes)
      installer  the installer's kernel + initramfs size (goal <= 0.85x before the trims) and, from lab VMs
              (TCG), its boot time to the agent's first request and power-on -> active with a firmware
              reboot vs kexec (one deployment each per run)

    Needs root (loop devices, mounts, builds) and `bash .ci/setup`. A full run takes about an hour.
    """
    if os.geteuid() != 0:
        raise click.UsageError("the benchmarks need root (loop devices, mounts, image builds)")
    sections = only or SECTIONS
    output = output or (REPO / "bench/results" / ("latest.json" if set(sections) == set(SECTIONS) else "tmp/latest.json"))
    work.mkdir(parents=True, exist_ok=True)
    echo = click.echo
    try:
        result = run_all(sections, runs, kickstart, image_dir, large_size << 20, work, echo, machines)
    except MetalstreamError as exc:
        click.echo(f"bench: failed: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:  # servers, VMs, mounts and loop devices were released on the way out
        click.echo("bench: interrupted", err=True)
        sys.exit(130)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    from .chart import draw
    chart = draw(result, output.with_suffix(".png"))
    echo("")
    echo(render_table(result))
    echo(f"\nresults: {output}\nchart:   {chart}")


def run_all(sections, runs: int, kickstart: Path, image_dir: Path, large_size: int, work: Path, echo,
            machines: int = 1000) -> dict:
    from lab.demo import ensure_image

    started = datetime.datetime.now(datetime.timezone.utc)
    echo(f"bench: {', '.join(sections)}; {runs} run(s) each; scratch in {work}")
    if set(sections) == {"fleet"}:  # needs no built image
        from .fleet import bench_fleet
        return {"schema": "metalstream-bench/1", "created": started.strftime("%Y-%m-%d %H:%M UTC"),
                "machine": host.machine(), "fleet": bench_fleet(machines, work, echo)}
    if set(sections) == {"ks_lint"}:  # needs no built image
        from .ks_lint import bench_ks_lint
        return {"schema": "metalstream-bench/1", "created": started.strftime("%Y-%m-%d %H:%M UTC"),
                "machine": host.machine(), "runs": runs, "ks_lint": bench_ks_lint(runs, work, echo)}
    manifest, _ = ensure_image(kickstart, image_dir, kickstart.stem, "tarball", rebuild=False, echo=echo)
    image, tarball = deploy.image_files(manifest)
    result = {"schema": "metalstream-bench/1", "created": started.strftime("%Y-%m-%d %H:%M UTC"),
              "machine": host.machine(), "runs": runs,
              "image": {"name": image["name"], "size": image["size"], "uncompressed_size": image["uncompressed_size"],
                        "sha256": image["sha256"]}}
    host.warm(tarball)
    small_rss: list[float] = []
    if "deploy" in sections:
        result.update(bench_deploy(manifest, tarball, kickstart, runs, work, echo, small_rss))
    if "serve" in sections:
        result["serve_vs_nginx"] = bench_serve(manifest, tarball, image["size"], runs, work, echo)
    if "memory" in sections:
        result["agent_peak_rss_mb"] = bench_memory(manifest, image, runs, large_size, work, echo, small_rss)
    if "build" in sections:
        result["build"] = bench_build(kickstart, runs, work, echo, image["sha256"])
    if "fleet" in sections:
        from .fleet import bench_fleet
        result["fleet"] = bench_fleet(machines, work, echo)
    if "ks_lint" in sections:
        from .ks_lint import bench_ks_lint
        result["ks_lint"] = bench_ks_lint(runs, work, echo)
    if "peers" in sections:
        from .peers import bench_peers
        result["peers"] = bench_peers(manifest, tarball, runs, work, echo, package=package_figure(result))
    if "installer" in sections:
        from .installer import bench_installer
        result["installer"] = bench_installer(manifest, work, echo, runs=1)
    result["seconds"] = round((datetime.datetime.now(datetime.timezone.utc) - started).total_seconds())
    return result


def bench_deploy(manifest, tarball, kickstart, runs, work, echo, small_rss) -> dict:
    echo("deploy: metalstream install vs package install vs zstd | tar")
    deploys, raws, packages, deploy_phases, package_phases = [], [], [], [], []
    for index in range(runs):
        echo(f"  run {index + 1}/{runs}")
        run = deploy.deploy_once(manifest, work, echo)
        deploys.append(run.seconds)
        deploy_phases.append(deploy.phase_durations(run.lines, run.seconds))
        small_rss.append(run.peak_rss_mib)
        raws.append(deploy.raw_once(tarball, work, echo))
        seconds, phases = deploy.package_install_once(kickstart, work, Path("/var/cache/metalstream"), echo)
        packages.append(seconds)
        package_phases.append(phases)
    deploy_fig, raw_fig, package_fig = figure(deploys), figure(raws), figure(packages)
    package_ratio, raw_ratio = ratio(package_fig, deploy_fig), ratio(deploy_fig, raw_fig)
    return {
        "deploy_vs_package": {"deploy_seconds": deploy_fig, "package_seconds": package_fig, "ratio": package_ratio,
                              **goal(package_ratio, ">=", 10), "package_phases_seconds": median_of_phases(package_phases)},
        "deploy_vs_raw": {"deploy_seconds": deploy_fig, "raw_seconds": raw_fig, "ratio": raw_ratio,
                          **goal(raw_ratio, "<=", 1.10), "deploy_phases_seconds": median_of_phases(deploy_phases)},
    }


def bench_serve(manifest, tarball, size, runs, work, echo) -> dict:
    echo("serve: concurrent full downloads, metalstream serve vs nginx")
    rates: dict[int, dict[str, list[float]]] = {n: {"metalstream": [], "nginx": []} for n in CLIENT_COUNTS}
    rounds = runs * SERVE_ROUNDS_PER_RUN  # a round is a few seconds; more of them steady the median
    with serve.metalstream_server(manifest, work) as ours, serve.nginx_server(tarball, work) as theirs:
        for index in range(rounds):
            for clients in CLIENT_COUNTS:
                for name, url in (("metalstream", ours), ("nginx", theirs)):
                    rate = serve.download_round(url, clients, size)
                    rates[clients][name].append(rate)
                    echo(f"  round {index + 1}/{rounds}: {clients:2d} clients, {name:<11} {rate:8.1f} MiB/s")
    table = {}
    for clients, by_server in rates.items():
        ours_fig, theirs_fig = figure(by_server["metalstream"], 1), figure(by_server["nginx"], 1)
        table[str(clients)] = {"metalstream_mib_s": ours_fig, "nginx_mib_s": theirs_fig,
                               "ratio": ratio(ours_fig, theirs_fig)}
    ratio_16 = table["16"]["ratio"]
    return {"clients": table, "ratio_1": table["1"]["ratio"], "ratio_4": table["4"]["ratio"], "ratio_16": ratio_16,
            **goal(ratio_16, ">=", 0.9)}


def bench_memory(manifest, image, runs, large_size, work, echo, small_rss) -> dict:
    echo("memory: the agent's peak RSS, small and large image")
    if not small_rss:
        small_rss.extend(deploy.deploy_once(manifest, work, echo).peak_rss_mib for _ in range(runs))
    large_manifest = make_large_image(manifest, large_size, work, echo)
    large = json.loads(large_manifest.read_text())
    large_rss = [deploy.deploy_once(large_manifest, work, echo).peak_rss_mib for _ in range(runs)]
    small_fig, large_fig = figure(small_rss, 1), figure(large_rss, 1)
    worst = max(small_fig["max"], large_fig["max"])
    return {"small": small_fig["median"], "large": large_fig["median"], "small_runs": small_fig,
            "large_runs": large_fig, "image_mib": {"small": round(image["size"] / 2**20), "large": round(large["size"] / 2**20)},
            **goal(worst, "<=", 100)}


def bench_build(kickstart, runs, work, echo, image_sha) -> dict:
    return build.bench_build(kickstart, runs, work, echo, image_sha, figure, ratio, goal)


def package_figure(result: dict) -> dict | None:
    """The package install's time for the peers table: this run's deploy section, else the last full run's."""
    if "deploy_vs_package" in result:
        return {"seconds": result["deploy_vs_package"]["package_seconds"], "from": "this run"}
    latest = REPO / "bench/results/latest.json"
    if latest.exists():
        last = json.loads(latest.read_text())
        if "deploy_vs_package" in last:
            return {"seconds": last["deploy_vs_package"]["package_seconds"],
                    "from": f"bench/results/latest.json ({last.get('created', '?')})"}
    return None


def render_table(result: dict) -> str:
    rows = [("measurement", "metalstream", "alternative", "ratio", "goal", "")]

    def secs(fig):
        return f"{fig['median']:.1f} s ({fig['min']:.1f}–{fig['max']:.1f})"

    if "deploy_vs_package" in result:
        r = result["deploy_vs_package"]
        rows.append(("deploy vs package install", secs(r["deploy_seconds"]), secs(r["package_seconds"]),
                     f"{r['ratio']}x faster", r["goal"], _met(r)))
    if "deploy_vs_raw" in result:
        r = result["deploy_vs_raw"]
        rows.append(("deploy vs zstd|tar+sync", secs(r["deploy_seconds"]), secs(r["raw_seconds"]),
                     f"{r['ratio']}x the time", r["goal"], _met(r)))
    if "serve_vs_nginx" in result:
        r = result["serve_vs_nginx"]
        for clients, row in r["clients"].items():
            rows.append((f"serve, {clients} clients", f"{row['metalstream_mib_s']['median']:.0f} MiB/s",
                         f"{row['nginx_mib_s']['median']:.0f} MiB/s (nginx)", f"{row['ratio']}x",
                         r["goal"] if clients == "16" else "", _met(r) if clients == "16" else ""))
    if "agent_peak_rss_mb" in result:
        r = result["agent_peak_rss_mb"]
        for size in ("small", "large"):
            rows.append((f"agent peak RSS, {size} ({r['image_mib'][size]} MiB)", f"{r[size]:.1f} MiB", "", "",
                         r["goal"], _met(r)))
    if "build" in result:
        r = result["build"]
        rows.append(("build unchanged (reused) vs cold", secs(r["cached_seconds"]), secs(r["cold_seconds"]) + " (cold)",
                     f"{r['cached_over_cold']} of cold", r.get("goal", ""), _met(r)))
        if "cold_before_after" in r:
            c = r["cold_before_after"]
            rows.append(("build cold, new vs old path", secs(c["new_seconds"]), secs(c["old_seconds"]) + " (old)",
                         f"{c['ratio']}x the time", c["goal"], _met(c)))
            rows.append(("build 2 concurrent, 1 cache", "same sha256" if r["concurrent_reproducible"] else "DIFFER",
                         "", "", "sha256 equal", "met" if r["concurrent_reproducible"] else "NOT MET"))
        rows.append(("build reproducible", "yes" if r["reproducible"] else "NO", "", "", "sha256 equal",
                     "met" if r["reproducible"] else "NOT MET"))
    if "fleet" in result:
        r = result["fleet"]
        for name, setup in r["setups"].items():
            from .fleet import agent_p99
            rows.append((f"fleet {r['machines']} machines, {name}", f"agent p99 {agent_p99(setup)} ms",
                         f"{setup['requests_per_second']} req/s", f"{setup['failed_machines']} failed",
                         r["goal"] if name == "postgresql_x3" else "",
                         _met(r) if name == "postgresql_x3" else ""))
    if "ks_lint" in result:
        r = result["ks_lint"]
        rows.append((f"ks lint, {r['files']} files", secs(r["metalstream_seconds"]) + " (one call)",
                     secs(r["ksvalidator_seconds"]) + " (ksvalidator per file)", f"{r['ratio']}x the time",
                     r["goal"], _met(r)))
    if "peers" in result:
        rows += _peer_rows(result["peers"], secs)
    if "installer" in result:
        from .installer import table_rows
        rows += table_rows(result["installer"], secs, _met)
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    for key, phases_key, label in (("deploy_vs_raw", "deploy_phases_seconds", "metalstream install"),
                                   ("deploy_vs_package", "package_phases_seconds", "package install")):
        if key in result and result[key].get(phases_key):
            phases = ", ".join(f"{name} {secs:.1f}" for name, secs in result[key][phases_key].items())
            lines.append(f"{label}, median seconds per phase: {phases}")
    if "peers" in result:
        lines.append(f"peers: {result['peers']['notes']}")
    return "\n".join(lines)


def _peer_rows(peers: dict, secs) -> list[tuple]:
    from .peers import LABELS
    rows = []
    for link, row in peers["links"].items():
        ours = row["methods"]["metalstream"]
        for method, record in row["methods"].items():
            if method == "metalstream":
                continue
            last = method == list(row["methods"])[-1] and link == list(peers["links"])[-1]
            rows.append((f"peers {link}: vs {LABELS[method]}",
                         f"{secs(ours['seconds'])}, {ours['bytes'] / 2**20:.0f} MiB",
                         f"{secs(record['seconds'])}, {record['bytes'] / 2**20:.0f} MiB",
                         f"{record['ratio']}x our time", "fastest, fewest bytes" if last else "",
                         _met(peers) if last else ""))
    if peers.get("package_install"):
        package = peers["package_install"]
        rows.append(("peers: package install", "", f"{secs(package['seconds'])} ({package['from']})", "", "", ""))
    return rows


def _met(record: dict) -> str:
    return {True: "met", False: "NOT MET", None: "?"}[record.get("met")]
