"""ZenML steps, one per file, grouped by stage; each a thin wrapper over the package.

Steps are imported wherever ZenML runs them (this process on dev, a pod on prod):
there ZenML's slow package lookup is cached once (``compat.cache_source_package_lookup``).
"""

from tabular_mlops.adapters.compat import cache_source_package_lookup

cache_source_package_lookup()
