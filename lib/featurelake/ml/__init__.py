"""Machine learning on gold features: model configs, training, MLflow tracking and registry.

Modules:
    config: typed model configurations from ``conf/models/*.yaml``, validated before training.
    tracking: MLflow set-up (local sqlite + artifact folder by default, any tracking URI).
    classification: binary classifiers (logistic regression, random forest, GBT) with search.
    segmentation: clustering (KMeans, BisectingKMeans, GaussianMixture) with k by silhouette.
    registry: ``challenger`` registration and ``champion`` promotion.
"""
