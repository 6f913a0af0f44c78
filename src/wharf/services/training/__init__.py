"""Training: from a table and a :class:`~wharf.services.training.spec.TrainSpec` to a fitted,
evaluated and explained scikit-learn pipeline.

Rule of this package: pure computation on what it is handed (a spec, a DataFrame, a profile); it
reads and writes no storage, starts no process and knows no HTTP. The caller (the jobs service, in
a worker process) loads the dataset, calls :func:`~wharf.services.training.trainer.train`, and
registers what it returns. A registered pipeline imports only scikit-learn (or xgboost, lightgbm)
and :mod:`wharf.services.training.transformers` / ``algorithms`` at load time.

    spec.py          TrainSpec and check(spec, profile)
    algorithms.py    the catalogue of algorithms and their params
    transformers.py  column transformers scikit-learn lacks (booleans, datetimes, strings, text)
    pipeline.py      build_pipeline(spec, kinds): ColumnTransformer by column kind, then the model
    search.py        grid and random search with per-candidate progress
    fitting.py       fit guarded: warnings recorded, exceptions as wharf errors
    evaluate.py      evaluate(task, y_true, y_pred, proba, classes) and explain(pipeline)
    trainer.py       train(spec, frame, progress) -> TrainResult
    quick.py         quick_fit(X, y, algorithm, params, seed) for POST /v1/fit
"""
