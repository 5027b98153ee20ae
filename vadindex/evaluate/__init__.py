"""Evaluation: pure metrics, benchmark ground truth (UCF-Crime, XD-Violence annotations and folder
layouts), and the metrics of a detection."""
