"""Scoring encoders and policies: success with intervals, linear probes of the state,
prediction quality, and the means over tasks the report gives.

Plots and the report builder stay in their modules (``plots`` imports matplotlib), and so
does ``evaluate`` (``sslrobot.evaluation.evaluate.evaluate``): a function of the module's own
name here would hide the module from ``from sslrobot.evaluation import evaluate``.
"""

from sslrobot.evaluation.across_tasks import success_across_tasks
from sslrobot.evaluation.evaluate import aggregate_results, load_results
from sslrobot.evaluation.prediction import prediction_quality
from sslrobot.evaluation.probe import ProbeConfig, probe_representation, run_probe
from sslrobot.evaluation.statistics import stratified_bootstrap_ci, success_interval

__all__ = [
    "ProbeConfig",
    "aggregate_results",
    "load_results",
    "prediction_quality",
    "probe_representation",
    "run_probe",
    "stratified_bootstrap_ci",
    "success_across_tasks",
    "success_interval",
]
