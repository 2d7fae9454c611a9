"""Pictures of a scenario beside its table: what the city saw, over (simulated) time.

A table says pass or FAIL; a plot shows why: the lamp current dropping at dawn, the
bicycle bins rising with the race, a tilt stepping up when the truck hits. Each plot
draws only verified records (what the city's verifier accepted), one line per pole,
against the poles' own time stamps in local hours. SVG, made with matplotlib (the
``demo`` extra); ``pole-sim scenario --plots DIR`` writes one per scenario.
"""

from __future__ import annotations

from pathlib import Path

# scenario -> [(record name suffix, message kind, axis label)]: the series that tell it.
SERIES: dict[str, list[tuple[str, str, str]]] = {
    "day-night": [
        ("/ina219/current/mean", "data", "lamp current (A)"),
        ("/bme280/temperature/mean", "data", "temperature (Cel)"),
    ],
    "heat-wave": [("/bme280/temperature/mean", "data", "temperature (Cel)")],
    "crowd": [("/ld2450/bicycles/count", "counts", "bicycles per bin (0: suppressed)")],
    "pole-knocked": [("/lis3dh/tilt/mean", "data", "tilt (deg)")],
    "lamp-fails": [("/ina219/current/mean", "data", "lamp current (A)")],
    "sensor-unplugged": [
        ("/bme280/temperature/count", "data", "BME280 samples per window"),
        ("/sds011/pm2_5/count", "data", "SDS011 samples per window"),
    ],
    "broker-outage": [("/sds011/pm2_5/mean", "data", "PM2.5 (ug/m3), every window once")],
    "power-cut-at-dawn": [
        ("/bme280/temperature/mean", "data", "temperature (Cel), spooled and live")
    ],
}


def plot(name: str, stages: list, path: Path, utc_offset_h: float = 1.0) -> Path | None:
    """Write ``path`` (SVG) for scenario ``name`` from the stages it ran; None when the
    scenario has no series to show or nothing of them was verified."""
    import matplotlib

    matplotlib.use("Agg")  # no screen: files only
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small, searchable
    import matplotlib.pyplot as plt

    specs = SERIES.get(name, [])
    lines = []
    for suffix, kind, label in specs:
        for st in stages:
            for p, pid in enumerate(st.ids):
                pts = sorted(st.series(p, suffix, kind))
                pts = [(t, v) for t, v in pts if isinstance(v, (int, float)) and t > 2**28]
                if pts:
                    lines.append((label, pid, pts))
    if not lines:
        return None
    labels = list(dict.fromkeys(label for label, _, _ in lines))
    fig, axes = plt.subplots(len(labels), 1, figsize=(8, 2.6 * len(labels)), squeeze=False)
    for ax, label in zip(axes[:, 0], labels, strict=True):
        for _, pid, pts in (x for x in lines if x[0] == label):
            hours = [((t / 3600 + utc_offset_h) % 24) for t, _ in pts]
            ax.plot(hours, [v for _, v in pts], marker=".", label=pid)
        ax.set_ylabel(label)
        ax.set_xlabel("local time (h)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle(f"scenario {name}: verified records")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="svg")
    plt.close(fig)
    return path
