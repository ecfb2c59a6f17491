# Copyright (c) 2026 Text-guided segmentation bundles contributors
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at http://www.apache.org/licenses/LICENSE-2.0

"""Utilities shared by the bundles and the tools: config checks, error reporting, parameter counting, latency and
peak-memory measurement."""

from __future__ import annotations

from .config import require, require_bool, require_choice
from .distributed import end_process_group, end_process_group_at_exit, release_process_group
from .errors import DataError, error_summary, exception_chain, install_error_summary
from .profiling import (
    count_forward_parameters,
    measure_latency,
    read_proc_status_kib,
    reset_peak_rss,
    track_peak_memory,
)

__all__ = [
    "DataError",
    "end_process_group",
    "end_process_group_at_exit",
    "release_process_group",
    "error_summary",
    "exception_chain",
    "install_error_summary",
    "count_forward_parameters",
    "measure_latency",
    "read_proc_status_kib",
    "require",
    "require_bool",
    "require_choice",
    "reset_peak_rss",
    "track_peak_memory",
]

from .stage_checkpoint import check_stage_checkpoint  # noqa: E402

__all__ += ["check_stage_checkpoint"]

from .large_files import find_large_file, missing_file_message, read_large_files  # noqa: E402

__all__ += ["find_large_file", "missing_file_message", "read_large_files"]

from .onnx_runtime import INFERENCE_BACKENDS, OnnxRuntimeNetwork, inference_network  # noqa: E402

__all__ += ["INFERENCE_BACKENDS", "OnnxRuntimeNetwork", "inference_network"]
