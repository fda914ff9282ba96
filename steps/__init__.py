"""ZenML steps, one per file, grouped by stage; each a thin wrapper over the package.

ZenML 0.98 resolves the source of every artifact's type each time it saves one,
and for a type from an installed distribution (pandas, scikit-learn) it scans
the file lists of every installed distribution to name its package: about
0.1 s per artifact here, five to six times a run. The answer cannot change
while a process runs, so it is computed once per module name. Steps are
imported wherever ZenML runs them (this process on dev, a pod on prod).
"""

import functools

from zenml.utils import source_utils

source_utils._get_package_for_module = functools.cache(source_utils._get_package_for_module)
