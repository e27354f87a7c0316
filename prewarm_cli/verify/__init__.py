"""Cache-status probing (DESIGN §7): classification, pinned probing, rendering.

- :mod:`.classify`: what a response's cache headers say (hit, miss, revalidated, bypass,
  unknown); standard library only.
- :mod:`.pins`: curl's ``--resolve`` entries; standard library only.
- :mod:`.probe`: the options, the pinned httpx client, the probes and their summary and exit
  code.
- :mod:`.render`: the table and the summary line.

Callers import each name from its module: direct warming, which needs only the classifier,
loads nothing else, and nothing here imports httpx or rich until a probe is made.
"""
