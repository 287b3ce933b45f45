"""Certified lower bounds beside attacked upper bounds, for a randomly smoothed embedding model."""

from robustdml.certify.attack import AttackSettings
from robustdml.certify.evaluate import CertifyReport, CertifySettings, certify_model, certify_run

__all__ = ["AttackSettings", "CertifyReport", "CertifySettings", "certify_model", "certify_run"]
