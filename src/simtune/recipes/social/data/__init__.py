"""Pass 1 (``data social build``): raw corpora -> interaction trees (JSON lines) + a compact
per-user index.

One module per job: ``weibo.py``, ``ced.py`` and ``diffusion.py`` read their corpus and feed
items to the one tree builder (``trees.py``); ``users.py`` indexes users, profiles and
activity; ``records.py`` holds what they share; ``build.py`` drives a build.


Two input kinds, both streamed record by record:

- Weibo API JSON lines (one post per line): ``id``/``mid``, ``user`` (author object),
  ``text_raw`` or ``text``, ``created_at``, ``comments`` (each with ``user``,
  ``text_raw``, ``created_at`` and nested ``comments``/``replies``), ``reposts`` (the same,
  nested ``reposts``/``comments`` allowed). An item may instead carry ``parent`` = the id
  of another item of the same post (flat form). Plus a profile JSON (user id -> profile)
  and an optional id-mapping JSON (raw user id -> canonical id).
- CED (``weibo-ced``): ``original-microblog/<idx>_<mid>_<uid>.json`` root files and the
  matching ``rumor-repost`` / ``non-rumor-repost`` list of reposts/comments linked by
  ``parent`` (a ``mid``, ``""`` = the root). For CED, "line" in rejects is the 1-based
  position of the item in that list.

Every bad record goes to the reject log (file, line, field, reason) and is counted; the
rest is kept. Interactions later than ``window_seconds`` after the root are dropped and
counted (with everything below them).
"""
