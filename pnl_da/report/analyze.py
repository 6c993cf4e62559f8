"""`pnl-da analyze RUN_DIR`: where a finished run puts source and target images.

The final model's features of a fixed subset of each domain (the source's training split, the
target's evaluation split) are embedded with t-SNE (scikit-learn) and drawn twice, coloured by
domain and by class; the proxy A-distance (Ben-David et al. 2007; Ganin et al. 2016) is
2 (1 - 2 e), e the test error of a linear classifier telling the domains apart from the
features (trained on half of them): 0 when the domains are indistinguishable, 2 when they are
separable.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pnl_da.errors import UsageError


def proxy_a_distance(source: torch.Tensor, target: torch.Tensor, seed: int = 0) -> float:
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    features = torch.cat([source, target]).double().numpy()
    domains = [0] * len(source) + [1] * len(target)
    x_train, x_test, y_train, y_test = train_test_split(
        features, domains, test_size=0.5, random_state=seed, stratify=domains)
    scaler = StandardScaler().fit(x_train)
    classifier = LinearSVC(C=1.0, max_iter=5000, random_state=seed)
    classifier.fit(scaler.transform(x_train), y_train)
    error = 1.0 - classifier.score(scaler.transform(x_test), y_test)
    return 2.0 * (1.0 - 2.0 * min(error, 0.5))


def class_colours(n: int) -> list:
    """One colour per class from qualitative maps (tab10, tab20, then tab20b and tab20c); past
    60 classes, evenly spaced hues."""
    import matplotlib
    import numpy as np

    if n <= 10:
        colours = list(matplotlib.colormaps["tab10"].colors)
    else:
        colours = [c for name in ("tab20", "tab20b", "tab20c")
                   for c in matplotlib.colormaps[name].colors]
    if n > len(colours):
        colours = list(matplotlib.colormaps["hsv"](np.linspace(0, 1, n, endpoint=False)))
    return colours[:n]


def tsne_figure(source: torch.Tensor, target: torch.Tensor, source_labels: torch.Tensor,
                target_labels: torch.Tensor, title: str, seed: int = 0,
                class_names: list[str] | None = None):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from sklearn.manifold import TSNE

    features = torch.cat([source, target]).double().numpy()
    points = TSNE(n_components=2, init="pca", random_state=seed,
                  perplexity=min(30.0, (len(features) - 1) / 3)).fit_transform(features)
    n = len(source)
    fig, (by_domain, by_class) = plt.subplots(1, 2, figsize=(12, 5.2))
    by_domain.scatter(points[:n, 0], points[:n, 1], s=5, c="tab:blue", label="source")
    by_domain.scatter(points[n:, 0], points[n:, 1], s=5, c="tab:red", label="target")
    by_domain.legend(markerscale=3)
    by_domain.set_title("by domain")
    labels = torch.cat([source_labels, target_labels]).numpy()
    known = labels >= 0  # a target without labels is drawn grey, behind the classes
    by_class.scatter(points[~known, 0], points[~known, 1], s=5, c="lightgrey",
                     label="no label")
    classes = len(class_names) if class_names else int(labels.max(initial=-1)) + 1
    classes = max(classes, 1)
    # one colour per class: integer labels fall between the boundaries k - 0.5 and k + 0.5
    norm = BoundaryNorm([k - 0.5 for k in range(classes + 1)], classes)
    scatter = by_class.scatter(points[known, 0], points[known, 1], s=5, c=labels[known],
                               cmap=ListedColormap(class_colours(classes)), norm=norm)
    by_class.set_title("by class (both domains)" if known.all() else
                       "by class (target without labels: grey)")
    bar = fig.colorbar(scatter, ax=by_class, label="class", ticks=range(classes))
    bar.ax.set_yticklabels(class_names or [str(k) for k in range(classes)],
                           fontsize=8 if classes <= 20 else 6)
    for ax in (by_domain, by_class):
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set(xlabel="t-SNE 1", ylabel="t-SNE 2")
    fig.suptitle(title)
    fig.tight_layout()
    return fig, points


def analyze_run(run_dir: Path, out: Path, data_root: str | None = None,
                images: int = 1000) -> dict:
    from pnl_da.engine import validators
    from pnl_da.engine.evaluate import batches_for, outputs
    from pnl_da.engine.evaluate_run import finished_run_config, load_method
    from pnl_da.engine.tasks import task_of
    from pnl_da.engine.trainer import autocast, resolve_device
    from pnl_da.files import write_json

    cfg = finished_run_config(run_dir, data_root)
    task = task_of(cfg)
    if images < 10:
        raise UsageError(f"--images {images}: use at least 10 images per domain")
    domains = task.analysis_data()  # a semi-supervised run has none: refused here
    device = resolve_device("auto")
    model = load_method(run_dir, task, device).eval_model()
    feats, labels = [], []
    for _, data in domains:
        chosen = validators.subset(len(data), images, seed=2)
        _, f, y = outputs(model, batches_for(task, data, device, indices=chosen),
                          lambda: autocast(device, device.type == "cuda"), cfg.method.predict)
        feats.append(f)
        labels.append(y)
    pad = proxy_a_distance(*feats)
    name = f"{cfg.benchmark.source}->{cfg.benchmark.target}"
    fig, _ = tsne_figure(feats[0], feats[1], labels[0], labels[1],
                         f"{cfg.method.name} {name}: t-SNE of the final features "
                         f"(proxy A-distance {pad:.3f})", class_names=list(task.class_names))
    out.mkdir(parents=True, exist_ok=True)
    figure = out / "tsne.png"
    fig.savefig(figure, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    metrics = {"proxy_a_distance": pad, "source_images": len(feats[0]),
               "target_images": len(feats[1]), "features": int(feats[0].shape[1])}
    write_json(out / "analysis.json", metrics)
    lines = [f"{run_dir}: {cfg.method.name} {name}, {len(feats[0])} source and "
             f"{len(feats[1])} target images, {feats[0].shape[1]}-d features",
             f"  proxy A-distance {pad:.3f} (0: domains indistinguishable, 2: separable)",
             f"  t-SNE by domain and by class: {figure}"]
    return {"metrics": metrics, "lines": lines}
