"""The probe protocol: subject-grouped, repeated, nested cross-validation, metrics and paired tests.

No subject is ever on both sides of a split, in the outer folds (scored) or the inner folds
(hyperparameter choice). Every representation of a task sees the identical outer folds, so
differences between them can be compared fold by fold.
"""

import joblib
import numpy as np
from scipy import stats
import sklearn
from sklearn import dummy
from sklearn import linear_model
from sklearn import metrics as sk_metrics
from sklearn import model_selection
from sklearn import pipeline
from sklearn import preprocessing
import threadpoolctl

CLASSIFICATION_METRICS = ("f1", "accuracy", "balanced_accuracy", "auroc")
REGRESSION_METRICS = ("pearson_r", "mae", "one_minus_mae")
LOWER_IS_BETTER = ("mae",)


class ProbeFoldError(ValueError):
  """A split cannot be scored (e.g. a training fold with a single class); the message names it."""


def group_folds(y, groups, task_type, num_folds, seed):
  """Outer folds [(train, test)] with whole subjects on one side; stratified for classification."""
  if task_type == "classification":
    splitter = model_selection.StratifiedGroupKFold(num_folds, shuffle=True, random_state=seed)
    return [(tr, te) for tr, te in splitter.split(np.zeros(len(y)), y, groups)]
  # Seeded subject shuffle, then each subject to the fold with fewest videos: balanced folds
  # that change with the seed (GroupKFold only shuffles from scikit-learn 1.6 on).
  subjects, sizes = np.unique(groups, return_counts=True)
  order = np.random.default_rng(seed).permutation(len(subjects))
  fold_of_subject, fold_sizes = {}, np.zeros(num_folds, int)
  for s in order:
    fold = int(np.argmin(fold_sizes))
    fold_of_subject[subjects[s]] = fold
    fold_sizes[fold] += sizes[s]
  fold_of_video = np.array([fold_of_subject[g] for g in groups])
  return [(np.flatnonzero(fold_of_video != f), np.flatnonzero(fold_of_video == f))
          for f in range(num_folds)]


def check_training_fold(task, y_train, groups_train, repeat, fold, task_type, inner_folds):
  """Stops with a clear message when a training fold cannot train or tune a classifier."""
  if task_type != "classification":
    return inner_folds
  classes = np.unique(y_train)
  if len(classes) < 2:
    raise ProbeFoldError(
        f"task '{task}': training fold {fold} of repeat {repeat} holds only class {classes[0]!r}; "
        "the other class has too few subjects for this many folds (lower config.cv.folds)")
  subjects_per_class = min(len(np.unique(groups_train[y_train == c])) for c in classes)
  if subjects_per_class < 2:
    raise ProbeFoldError(
        f"task '{task}': training fold {fold} of repeat {repeat} has a class with one subject, "
        "too few for an inner (subject-grouped) hyperparameter search")
  return min(inner_folds, subjects_per_class)


def _linear_model(task_type, value, max_iter):
  if task_type == "classification":
    # lbfgs warm-starts along the grid; balanced weights so the majority cannot win macro F1.
    return linear_model.LogisticRegression(C=value, class_weight="balanced", max_iter=max_iter,
                                           warm_start=True)
  return linear_model.Ridge(alpha=value)


def _inner_score(task_type, model, x, y):
  """AUROC (one-vs-rest for several classes) or R^2 on an inner validation split."""
  if task_type == "classification":
    if len(np.unique(y)) < 2:
      return float("nan")
    if len(model.classes_) == 2:
      return binary_auroc(y == model.classes_[1], model.decision_function(x))
    return sk_metrics.roc_auc_score(y, model.predict_proba(x), multi_class="ovr",
                                    labels=model.classes_)
  residual = np.sum((y - model.predict(x)) ** 2)
  return 1.0 - residual / max(np.sum((y - y.mean()) ** 2), 1e-12)


def binary_auroc(positive, scores):
  """AUROC as the Mann-Whitney statistic (ties count half): roc_auc_score without its overhead."""
  ranks = stats.rankdata(scores)
  num_pos = int(positive.sum())
  num_neg = len(positive) - num_pos
  return float((ranks[positive].sum() - num_pos * (num_pos + 1) / 2) / (num_pos * num_neg))


class NestedLinearModel:
  """Weighting steps, z-scoring and a linear model whose C (or alpha) is chosen on inner splits.

  The same thing as GridSearchCV over a Pipeline, written out because the transforms do not
  depend on C: they are fitted once per inner split and the grid is walked with warm starts,
  which keeps the whole probe run to seconds.
  """

  def __init__(self, task_type, steps_factory, grid, inner_splits, max_iter):
    self.task_type, self.steps_factory, self.grid = task_type, steps_factory, list(grid)
    self.inner_splits, self.max_iter = inner_splits, max_iter

  def _transform(self):
    steps = list(self.steps_factory()) + [("scale", preprocessing.StandardScaler())]
    return pipeline.Pipeline(steps)

  def fit(self, x, y):
    scores = np.zeros((len(self.inner_splits), len(self.grid)))
    for i, (train, valid) in enumerate(self.inner_splits):
      transform = self._transform().fit(x[train])
      x_train, x_valid = transform.transform(x[train]), transform.transform(x[valid])
      model = _linear_model(self.task_type, self.grid[0], self.max_iter)
      for j, value in enumerate(self.grid):
        model.set_params(**{"C" if self.task_type == "classification" else "alpha": value})
        model.fit(x_train, y[train])
        scores[i, j] = _inner_score(self.task_type, model, x_valid, y[valid])
    mean_scores = np.nanmean(np.where(np.isfinite(scores), scores, np.nan), axis=0)
    self.best_value = float(self.grid[int(np.nanargmax(mean_scores))]
                            if np.isfinite(mean_scores).any() else self.grid[0])
    self.inner_scores = mean_scores.tolist()
    self.transform = self._transform().fit(x)
    self.model = _linear_model(self.task_type, self.best_value, self.max_iter)
    self.model.fit(self.transform.transform(x), y)
    self.classes_ = getattr(self.model, "classes_", None)
    return self

  def predict(self, x):
    return self.model.predict(self.transform.transform(x))

  def predict_proba(self, x):
    return self.model.predict_proba(self.transform.transform(x))


def make_estimator(task_type, steps_factory, grid, inner_splits, max_iter, chance):
  """The nested linear model for a representation, or the chance (prior / mean) predictor."""
  if chance:
    return (dummy.DummyClassifier(strategy="prior") if task_type == "classification"
            else dummy.DummyRegressor(strategy="mean"))
  return NestedLinearModel(task_type, steps_factory, grid, inner_splits, max_iter)


def classification_metrics(y_true, y_pred, scores, classes):
  """Macro F1, accuracy, balanced accuracy and AUROC (one-vs-rest macro; NaN on a one-class set)."""
  out = {
      "f1": sk_metrics.f1_score(y_true, y_pred, average="macro", labels=classes, zero_division=0),
      "accuracy": sk_metrics.accuracy_score(y_true, y_pred),
      "balanced_accuracy": _balanced_accuracy(y_true, y_pred),
  }
  if len(np.unique(y_true)) < 2:
    out["auroc"] = float("nan")
  elif len(classes) == 2:
    out["auroc"] = sk_metrics.roc_auc_score(y_true == classes[1], scores[:, 1])
  else:
    out["auroc"] = sk_metrics.roc_auc_score(y_true, scores, multi_class="ovr", labels=classes)
  return {k: float(v) for k, v in out.items()}


def _balanced_accuracy(y_true, y_pred):
  present = np.unique(y_true)
  return float(np.mean([np.mean(y_pred[y_true == c] == c) for c in present]))


def regression_metrics(y_true, y_pred, label_range):
  """Pearson r (0 for a constant prediction, which carries no linear information), MAE and 1-MAE.

  1-MAE is on labels rescaled to [0, 1] by `label_range` (the task's observed min and max), the
  convention of personality benchmarks whose labels already live in [0, 1].
  """
  if np.std(y_pred) < 1e-12 or np.std(y_true) < 1e-12:
    r = 0.0
  else:
    r = float(np.corrcoef(y_true, y_pred)[0, 1])
  mae = float(np.mean(np.abs(y_true - y_pred)))
  return {"pearson_r": r, "mae": mae,
          "one_minus_mae": 1.0 - mae / max(label_range[1] - label_range[0], 1e-12)}


def interval(values, confidence=0.95):
  """Mean and a t-interval over repeats ([mean, mean] for a single repeat)."""
  values = np.asarray([v for v in values if np.isfinite(v)], np.float64)
  if len(values) == 0:
    return {"mean": float("nan"), "ci95": [float("nan"), float("nan")], "n": 0}
  mean = float(values.mean())
  if len(values) < 2:
    return {"mean": mean, "ci95": [mean, mean], "n": 1}
  t_quantile = stats.t.ppf(0.5 + confidence / 2, len(values) - 1)
  half = t_quantile * values.std(ddof=1) / np.sqrt(len(values))
  return {"mean": mean, "ci95": [mean - float(half), mean + float(half)], "n": len(values)}


def paired_comparison(per_fold_a, per_fold_b, metric, test_fraction):
  """DFE minus a baseline on identical folds, with the corrected resampled t-test.

  Outer folds share most of their training videos, so a plain paired t-test over folds is
  overconfident; Nadeau & Bengio's correction inflates the variance by the test/train ratio
  (Bouckaert & Frank, 2004, for repeated k-fold). Wins count folds where `a` is better.
  """
  a = np.array([f[metric] for f in per_fold_a], np.float64)
  b = np.array([f[metric] for f in per_fold_b], np.float64)
  keep = np.isfinite(a) & np.isfinite(b)
  diff = a[keep] - b[keep]
  sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
  out = {"metric": metric, "n_folds": int(keep.sum()),
         "wins": int((sign * diff > 0).sum()), "losses": int((sign * diff < 0).sum())}
  if len(diff) < 2:
    return dict(out, mean_difference=float(diff.mean()) if len(diff) else float("nan"),
                ci95=[float("nan")] * 2, p_value=float("nan"))
  se = np.sqrt((1.0 / len(diff) + test_fraction / (1.0 - test_fraction)) * diff.var(ddof=1))
  mean = float(diff.mean())
  if se < 1e-12:
    p_value, half = (1.0 if abs(mean) < 1e-12 else 0.0), 0.0
  else:
    p_value = float(2 * stats.t.sf(abs(mean) / se, len(diff) - 1))
    half = float(stats.t.ppf(0.975, len(diff) - 1) * se)
  return dict(out, mean_difference=mean, ci95=[mean - half, mean + half], p_value=p_value)


def inner_splits(y, groups, task_type, num_folds, seed):
  """Subject-grouped splits of a training fold, for the hyperparameter search only."""
  return group_folds(y, groups, task_type, num_folds, seed + 10_000)


def _score_fold(task_type, y, representations, train, test, splits, grid, max_iter, classes,
                label_range, record):
  """Fits and scores every representation on one outer fold; returns {name: fold record}."""
  with threadpoolctl.threadpool_limits(1), sklearn.config_context(
      assume_finite=True, skip_parameter_validation=True):
    out = {}
    for name, representation in representations.items():
      x_train, x_test = representation.fold_matrices(train, test)
      estimator = make_estimator(task_type, representation.steps, grid, splits, max_iter,
                                 representation.chance)
      estimator.fit(x_train, y[train])
      fold_record = dict(record)
      if isinstance(estimator, NestedLinearModel):
        fold_record["chosen_" + ("C" if task_type == "classification" else "alpha")] = (
            estimator.best_value)
      prediction = estimator.predict(x_test)
      if classes is not None:
        scores = _class_scores(estimator, x_test, classes)
        fold_record.update(classification_metrics(y[test], prediction, scores, classes))
      else:
        fold_record.update(regression_metrics(y[test], prediction, label_range))
      out[name] = fold_record
    return out


def cross_validate(task, task_type, y, groups, representations, cv_config, model_config,
                   label_range, workers=1, log=lambda msg: None):
  """Runs every representation on the same repeated outer folds; returns fold and repeat scores.

  `representations` maps a name to an object with `fold_matrices(train, test)` (indices into
  this task's videos), `steps()` (fresh weighting steps) and `chance`. A repeat's metric is
  the mean over its outer folds. Pooling predictions across folds instead would let the
  fold-to-fold shifts of the training mean correlate with held-out labels (a mean predictor
  then scores a clearly negative Pearson r), so every metric is taken within a fold. Folds
  run in `workers` processes; each is seeded on its own, so the result does not depend on it.
  """
  classes = np.unique(y) if task_type == "classification" else None
  metric_names = CLASSIFICATION_METRICS if classes is not None else REGRESSION_METRICS
  grid = (model_config.logistic_c_grid if task_type == "classification"
          else model_config.ridge_alpha_grid)
  jobs, folds_record = [], []
  for repeat in range(cv_config.repeats):
    seed = cv_config.seed + repeat
    folds = group_folds(y, groups, task_type, cv_config.folds, seed)
    folds_record.append([sorted(set(groups[test].tolist())) for _, test in folds])
    for fold, (train, test) in enumerate(folds):
      if set(groups[train]) & set(groups[test]):
        raise ProbeFoldError(f"task '{task}': a subject is on both sides of fold {fold}")
      num_inner = check_training_fold(task, y[train], groups[train], repeat, fold, task_type,
                                      cv_config.inner_folds)
      splits = inner_splits(y[train], groups[train], task_type, num_inner, seed)
      record = {"repeat": repeat, "fold": fold, "num_test": int(len(test))}
      jobs.append(joblib.delayed(_score_fold)(task_type, y, representations, train, test, splits,
                                              grid, model_config.max_iter, classes, label_range,
                                              record))
  fold_results = joblib.Parallel(n_jobs=workers)(jobs)
  log(f"task '{task}': {len(jobs)} folds scored")
  results = {}
  for name in representations:
    per_fold = [f[name] for f in fold_results]
    per_repeat = [{m: _nanmean([f[m] for f in per_fold if f["repeat"] == r]) for m in metric_names}
                  for r in range(cv_config.repeats)]
    metrics = {m: dict(interval([r[m] for r in per_repeat]), per_repeat=[r[m] for r in per_repeat])
               for m in metric_names}
    results[name] = {"metrics": metrics, "per_repeat": per_repeat, "per_fold": per_fold}
  return results, folds_record


def _nanmean(values):
  finite = [v for v in values if np.isfinite(v)]
  return float(np.mean(finite)) if finite else float("nan")


def _class_scores(estimator, x, classes):
  """Class probabilities in the order of `classes` (a training fold may have been missing none)."""
  proba = estimator.predict_proba(x)
  fitted = list(estimator.classes_)
  out = np.zeros((len(x), len(classes)))
  for j, c in enumerate(classes):
    if c in fitted:
      out[:, j] = proba[:, fitted.index(c)]
  return out
