"""The PNG chart of one result (matplotlib, no display needed)."""
from __future__ import annotations

from pathlib import Path


def draw(result: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [name for name in ("deploy", "serve", "memory", "build", "peers") if _has(result, name)]
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 4.2), squeeze=False)
    for axis, name in zip(axes[0], panels):
        globals()[f"_panel_{name}"](axis, result)
    fig.suptitle(f"metalstream bench — {result['created']} — {result['machine']['cpus']} CPUs", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _has(result: dict, name: str) -> bool:
    keys = {"deploy": ("deploy_vs_package", "deploy_vs_raw"), "serve": ("serve_vs_nginx",),
            "memory": ("agent_peak_rss_mb",), "build": ("build",), "peers": ("peers",)}[name]
    return any(key in result for key in keys)


def _bars(axis, labels, figures, colors, unit):
    medians = [f["median"] for f in figures]
    low = [f["median"] - f["min"] for f in figures]
    high = [f["max"] - f["median"] for f in figures]
    bars = axis.bar(labels, medians, yerr=[low, high], capsize=4, color=colors)
    for bar, value in zip(bars, medians):
        axis.annotate(f"{value:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                      ha="center", va="bottom", fontsize=8, xytext=(0, 2), textcoords="offset points")
    axis.set_ylabel(unit)


def _panel_deploy(axis, result):
    package, raw = result.get("deploy_vs_package", {}), result.get("deploy_vs_raw", {})
    rows = [("package\ninstall", package.get("package_seconds"), "#c44e52"),
            ("metalstream\ninstall", (raw or package).get("deploy_seconds"), "#4c72b0"),
            ("zstd | tar\n+ sync", raw.get("raw_seconds"), "#8c8c8c")]
    rows = [row for row in rows if row[1]]
    _bars(axis, [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows], "seconds (median, min–max)")
    axis.set_title("deploy one disk", fontsize=10)


def _panel_serve(axis, result):
    serve = result["serve_vs_nginx"]["clients"]
    counts = list(serve)
    width = 0.38
    xs = range(len(counts))
    for offset, key, label, color in ((-width / 2, "metalstream_mib_s", "metalstream serve", "#4c72b0"),
                                      (width / 2, "nginx_mib_s", "nginx", "#8c8c8c")):
        medians = [serve[c][key]["median"] for c in counts]
        errors = [[serve[c][key]["median"] - serve[c][key]["min"] for c in counts],
                  [serve[c][key]["max"] - serve[c][key]["median"] for c in counts]]
        axis.bar([x + offset for x in xs], medians, width, yerr=errors, capsize=3, label=label, color=color)
    axis.set_xticks(list(xs), [f"{c} clients" for c in counts])
    axis.set_ylabel("aggregate MiB/s")
    axis.legend(fontsize=8)
    axis.set_title("serve the image (loopback)", fontsize=10)


def _panel_memory(axis, result):
    memory = result["agent_peak_rss_mb"]
    labels = [f"{size}\n({memory['image_mib'][size]:.0f} MiB image)" for size in ("small", "large") if size in memory]
    figures = [memory[f"{size}_runs"] for size in ("small", "large") if size in memory]
    _bars(axis, labels, figures, ["#4c72b0"] * len(figures), "agent peak RSS (MiB)")
    axis.axhline(100, color="#c44e52", linestyle="--", linewidth=1)
    axis.set_title("agent memory (goal ≤ 100 MiB)", fontsize=10)


def _panel_build(axis, result):
    build = result["build"]
    _bars(axis, ["cold", "cached"], [build["cold_seconds"], build["cached_seconds"]], ["#c44e52", "#4c72b0"],
          "seconds")
    axis.set_title(f"build (reproducible: {build['reproducible']})", fontsize=10)


PEER_COLORS = {"metalstream": "#4c72b0", "curtin_tgz": "#dd8452", "ironic_qcow2": "#55a868",
               "ironic_qcow2_compressed": "#8172b3", "ironic_raw_zstd": "#8c8c8c"}


def _panel_peers(axis, result):
    from .peers import LABELS
    links = result["peers"]["links"]
    names = list(links)
    methods = list(next(iter(links.values()))["methods"])
    width = 0.8 / len(methods)
    for index, method in enumerate(methods):
        figures = [links[name]["methods"][method]["seconds"] for name in names]
        medians = [f["median"] for f in figures]
        errors = [[f["median"] - f["min"] for f in figures], [f["max"] - f["median"] for f in figures]]
        mib = links[names[0]]["methods"][method]["bytes"] / 2**20
        axis.bar([x - 0.4 + width * (index + 0.5) for x in range(len(names))], medians, width, yerr=errors,
                 capsize=2, color=PEER_COLORS.get(method), label=f"{LABELS[method]} ({mib:.0f} MiB)")
    axis.set_xticks(list(range(len(names))), names)
    axis.set_ylabel("seconds (median, min–max)")
    axis.legend(fontsize=6)
    axis.set_title(f"peers' methods, one disk (goal met: {result['peers']['met']})", fontsize=10)
