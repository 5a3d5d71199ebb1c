"""CED (``weibo-ced``): ``original-microblog`` root files and their repost/comment lists
linked by ``parent``; "line" in rejects is the 1-based position of the item in its list."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from simtune.io import DataError, DateRange
from simtune.recipes.social.data.records import Reject, decode_json_line, default_dates
from simtune.recipes.social.data.trees import Item, TreeBuilder
from simtune.recipes.social.data.weibo import checked_time
from simtune.recipes.social.schema import R_LIST_REJECTED, R_MISSING, R_MOJIBAKE, R_WRONG_TYPE, is_mojibake


def ced_files(ced_dir: str | os.PathLike, limit: int | None = None) -> list[tuple[Path, Path | None]]:
    """(root file, list file or None) pairs, sorted by file name."""
    d = Path(ced_dir)
    roots = sorted((d / "original-microblog").glob("*.json"), key=lambda p: p.name)
    if not roots:
        raise DataError(d, None, None, "no original-microblog/*.json files (is this a weibo-ced folder?)")
    if limit:
        roots = roots[:limit]
    out = []
    for r in roots:
        lst = None
        for sub in ("rumor-repost", "non-rumor-repost"):
            if (d / sub / r.name).is_file():
                lst = d / sub / r.name
        out.append((r, lst))
    return out


def ced_lists_without_root(ced_dir: str | os.PathLike) -> list[Path]:
    """Repost lists that have no root file (their items belong to no cascade)."""
    d = Path(ced_dir)
    roots = {p.name for p in (d / "original-microblog").glob("*.json")}
    return sorted((p for sub in ("rumor-repost", "non-rumor-repost") for p in (d / sub).glob("*.json")
                   if p.name not in roots), key=lambda p: p.name)


def ced_shown(path: Path, canon: Callable[[str], str] | None, pid: Callable[[str], str] | None = None) -> str:
    """The path as written into outputs: the author id in ``<index>_<mid>_<uid>.json`` goes
    through the id map / pseudonymizer like every other user id, and the mid through the
    post pseudonymizer when there is one. With pseudonyms the public file index is left out
    (``<p_mid>_<u_uid>.json``): it names the file of the public dataset, so it would lead back
    to the raw mid and uid. Without them, a name not of that form is shown as it is."""
    parts = path.stem.split("_")
    if pid is not None:
        if len(parts) < 3:  # not of the CED form: nothing in it can be told apart from an id
            return str(path.with_name(pid(path.stem) + path.suffix))
        return str(path.with_name(f"{pid(parts[-2])}_{canon(parts[-1]) if canon else parts[-1]}{path.suffix}"))
    if canon is None or len(parts) < 3:
        return str(path)
    return str(path.with_name("_".join(parts[:-2] + [parts[-2], canon(parts[-1])]) + path.suffix))


def _read_ced_list(b: TreeBuilder, list_file: Path, shown: str) -> list | None:
    """The items of a repost list; None for a list not readable as a whole (rejected and counted)."""
    try:
        lst = decode_json_line(list_file.read_bytes())
        if not isinstance(lst, list):
            raise Reject(R_WRONG_TYPE, None, "repost file must hold a JSON list")
        return lst
    except Reject as r:  # the whole list is unreadable: its items cannot be counted
        b.c["list_files_rejected"] += 1
        b.rejects.reject(shown, None, f"{r.reason}: {r.detail}" if r.detail else r.reason, field=r.field)
        return None


def add_ced_cascade(b: TreeBuilder, root_file: Path, list_file: Path | None, tz: int,
                    dates: DateRange | None = None) -> None:
    """One CED cascade. Root author: profile from the root's ``user`` object; the id and
    the root's mid come from the file name ``<index>_<mid>_<uid>.json``."""
    b.c["posts_in"] += 1
    dates = dates or default_dates()
    canon, pid = b.canon, getattr(b.pz, "post", None)
    f = ced_shown(root_file, canon, pid)
    lf = ced_shown(list_file, canon, pid) if list_file is not None else None
    try:
        parts = root_file.stem.split("_")
        if len(parts) < 3:
            raise Reject(R_MISSING, "file name", "expected <index>_<mid>_<uid>.json")
        rid, uid = parts[-2], canon(parts[-1]) if canon else parts[-1]
        if pid:
            rid = pid(rid)
        raw = root_file.read_bytes()
        obj = decode_json_line(raw)
        if not isinstance(obj, dict):
            raise Reject(R_WRONG_TYPE, None, "root file must hold a JSON object")
        text = obj.get("text")
        if text is None:
            raise Reject(R_MISSING, "text")
        if not isinstance(text, str):
            raise Reject(R_WRONG_TYPE, "text")
        if is_mojibake(text):
            raise Reject(R_MOJIBAKE, "text")
        text = b.mentions(text) if b.mentions is not None else text
        if "time" not in obj:
            raise Reject(R_MISSING, "time")
        t0 = checked_time(obj["time"], "time", tz, dates)
        u = obj.get("user")  # a few files hold the string "empty": the root author then has no profile
    except Reject as r:
        b.reject_post(f, 1, r.reason, r.field, r.detail)
        if list_file is not None:  # its items go with the post, counted
            n = len(_read_ced_list(b, list_file, lf) or ())
            b.c["interactions_in"] += n
            b.c["interactions_rejected_with_post"] += n
        return
    lst = _read_ced_list(b, list_file, lf) if list_file is not None else []
    if lst is None:  # the list is there but unreadable: who reacted is unknown, not "nobody"
        b.reject_post(f, 1, R_LIST_REJECTED, None, f"its repost list {lf} could not be read, so its reactions are "
                                                   f"unknown")
        return
    if isinstance(u, dict):
        prof = {"source": "ced_root"}
        for key in ("gender", "location", "followers", "friends", "messages", "verified"):
            if key in u and u[key] is not None:
                prof[key] = u[key]
        b.users.set_profile(uid, prof)
    items: list[Item] = []
    for k, o in enumerate(lst, 1):
        b.c["interactions_in"] += 1
        try:
            if not isinstance(o, dict):
                raise Reject(R_WRONG_TYPE, None, "item must be an object")
            iid, iu, par, txt = o.get("mid"), o.get("uid"), o.get("parent"), o.get("text")
            for name, v in (("mid", iid), ("uid", iu)):
                if v is None or v == "":
                    raise Reject(R_MISSING, name)
                if isinstance(v, bool) or not isinstance(v, (str, int)):
                    raise Reject(R_WRONG_TYPE, name)
            if par is None:
                raise Reject(R_MISSING, "parent")
            if not isinstance(par, (str, int)) or isinstance(par, bool):
                raise Reject(R_WRONG_TYPE, "parent")
            if txt is None:
                txt = ""
            if not isinstance(txt, str):
                raise Reject(R_WRONG_TYPE, "text")
            if txt and is_mojibake(txt):
                raise Reject(R_MOJIBAKE, "text")
            txt = b.mentions(txt) if b.mentions is not None else txt
            if "date" not in o:
                raise Reject(R_MISSING, "date")
            t = checked_time(o["date"], "date", tz, dates, t0)
        except Reject as r:
            b.reject_item(lf, k, r.reason, r.field, r.detail)
            continue
        iu = canon(str(iu)) if canon else str(iu)
        iid, par = str(iid), str(par) if par != "" else None
        if pid:
            iid, par = pid(iid), pid(par) if par is not None else None
        # CED does not tell reposts from comments: text -> comment, no text -> repost
        items.append(Item(iid, iu, "comment" if txt.strip() else "repost", txt, t, par, k, "item"))  # depth: walking
    b.add(lf or f, 1, {"id": rid, "user": uid, "text": text, "time": t0}, items, "ced", extra={"root_file": f})
