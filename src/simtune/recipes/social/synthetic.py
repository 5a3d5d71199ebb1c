"""A seeded synthetic corpus in the Weibo API form, with a known answer.

Each user has 2-3 latent interests out of :data:`TOPICS` and a writing style (an opener
and closer vocabulary, plus a repost habit). Each post has one topic (shown as a Weibo
``#topic#`` hashtag). Who reacts is mostly decided by interest-topic match (``match_prob``
of the reactors come from the users interested in the topic, the rest are random users);
whether a reactor comments or reposts is the user's habit; the text is made of the
user's style phrases and the topic's words. The profile JSON lists each user's interests
and style in words, so "the candidate whose profile names the post's topic reacts" is
learnable from the prompt alone.

Same seed and sizes -> byte-identical files.
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import orjson

from simtune.recipes.social.schema import format_iso_time, format_weibo_time

TOPICS: dict[str, list[str]] = {
    "football": ["goal", "match", "striker", "league", "penalty", "coach"],
    "food": ["noodles", "dumplings", "recipe", "spicy", "hotpot", "dessert"],
    "travel": ["flight", "beach", "hotel", "mountains", "passport", "trip"],
    "music": ["concert", "album", "guitar", "singer", "playlist", "lyrics"],
    "tech": ["phone", "chip", "app", "update", "laptop", "battery"],
    "finance": ["stocks", "market", "savings", "rates", "fund", "budget"],
    "movies": ["film", "trailer", "actor", "cinema", "sequel", "director"],
    "pets": ["cat", "puppy", "kitten", "vet", "leash", "treats"],
    "fashion": ["dress", "sneakers", "jacket", "runway", "outfit", "brand"],
    "gaming": ["console", "level", "boss", "speedrun", "controller", "patch"],
}

STYLES: dict[str, dict] = {
    "enthusiastic": {"desc": "enthusiastic, lots of exclamation marks",
                     "open": ["Love this!", "So good!", "Amazing!", "Yes!!"], "close": ["!!", "best ever!", "can't wait!"]},
    "sarcastic": {"desc": "sarcastic and dry",
                  "open": ["Oh sure,", "Yeah right,", "Wow, shocking,", "Of course,"], "close": ["...", "as always.", "what a surprise."]},
    "curious": {"desc": "asks questions",
                "open": ["Wait,", "Really?", "Hmm,", "Anyone know"], "close": ["?", "any tips?", "how come?"]},
    "concise": {"desc": "short and plain",
                "open": ["Noted.", "Ok.", "Fair.", "True."], "close": [".", "", "agreed."]},
    "emoji": {"desc": "writes with emoji",
              "open": ["😂", "🔥", "😍", "👍"], "close": ["😂😂", "🔥🔥", "💯", "🙌"]},
    "formal": {"desc": "formal and polite",
               "open": ["Indeed,", "In my view,", "Respectfully,", "Notably,"], "close": ["regards.", "thank you for sharing.", "well said."]},
}

POST_TEMPLATES = [
    "Big news about the {a} and the {b} today",
    "Thoughts on this {a}? The {b} surprised me",
    "Just saw the {a}, and the {b} was something else",
    "Is the {a} worth it? Asking about the {b}",
    "Weekend plans: {a}, then more {b}",
]
LOCATIONS = ["Beijing", "Shanghai", "Guangzhou", "Shenzhen", "Chengdu", "Hangzhou", "Wuhan", "Xi'an"]


def _user_text(rng: random.Random, style: str, topic: str, repost: bool) -> str:
    st = STYLES[style]
    w = rng.choice(TOPICS[topic])
    if repost:
        return "" if rng.random() < 0.3 else f"{rng.choice(st['open'])} {w} //"
    return f"{rng.choice(st['open'])} the {w} {rng.choice(st['close'])}".strip()


def generate(out_dir: str | os.PathLike, *, seed: int = 0, n_users: int = 300, n_posts: int = 400,
             start_time: int = 1_700_000_000, span_days: float = 60.0, match_prob: float = 0.9,
             min_reactors: int = 2, max_reactors: int = 6, reply_prob: float = 0.35,
             late_prob: float = 0.03, iso_share: float = 0.3) -> dict:
    """Write ``posts.jsonl`` and ``profiles.json`` (and ``truth.json``: the latent
    interests and styles) into ``out_dir``; return counts."""
    from simtune.io import atomic_path

    rng = random.Random(seed)
    topics = list(TOPICS)
    styles = list(STYLES)
    users = []
    by_topic: dict[str, list[int]] = {t: [] for t in topics}
    for i in range(n_users):
        ints = rng.sample(topics, rng.choice((2, 2, 3)))
        u = {"id": 1_000_000 + i, "screen_name": f"user{i:05d}", "interests": ints,
             "style": rng.choice(styles), "repost_prob": rng.choice((0.1, 0.3, 0.6, 0.9)),
             "gender": rng.choice("mf"), "location": rng.choice(LOCATIONS)}
        users.append(u)
        for t in ints:
            by_topic[t].append(i)

    def user_obj(i: int) -> dict:
        u = users[i]
        return {"id": u["id"], "screen_name": u["screen_name"], "gender": u["gender"],
                "location": u["location"], "followers_count": (u["id"] * 7919) % 5000}

    def pick(topic: str, exclude: set[int]) -> int | None:
        for _ in range(20):
            pool = by_topic[topic] if rng.random() < match_prob and by_topic[topic] else None
            i = rng.choice(pool) if pool else rng.randrange(n_users)
            if i not in exclude:
                return i
        return None

    def stamp(t: int) -> str:
        return format_iso_time(t) if rng.random() < iso_share else format_weibo_time(t)

    def delay() -> int:
        if rng.random() < late_prob:
            return int(rng.uniform(8, 12) * 86400)  # after the default one-week window
        return int(rng.expovariate(1 / 21600)) + 1

    cid = [7_000_000_000]

    def react(i: int, topic: str, t_parent: int, depth: int) -> dict:
        u = users[i]
        repost = rng.random() < u["repost_prob"]
        t = t_parent + delay()
        cid[0] += 1
        item = {"id": cid[0], "user": user_obj(i), "text_raw": _user_text(rng, u["style"], topic, repost),
                "created_at": stamp(t)}
        if depth < 3 and rng.random() < (reply_prob if depth == 1 else reply_prob / 3):
            seen = {i}
            for _ in range(rng.choice((1, 1, 2))):
                j = pick(topic, seen)
                if j is None:
                    continue
                seen.add(j)
                child = react(j, topic, t, depth + 1)
                item.setdefault("reposts" if child.pop("_repost") else "comments", []).append(child)
        item["_repost"] = repost
        return item

    n_inter = 0
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "posts.jsonl") as tmp, open(tmp, "wb") as fh:
        step = span_days * 86400 / max(n_posts, 1)
        for j in range(n_posts):
            a = rng.randrange(n_users)
            au = users[a]
            topic = rng.choice(au["interests"]) if rng.random() < 0.8 else rng.choice(topics)
            w1, w2 = rng.sample(TOPICS[topic], 2)
            t0 = int(start_time + j * step + rng.uniform(0, step))
            post = {"id": 4_900_000_000_000_000 + j, "mid": str(4_900_000_000_000_000 + j), "user": user_obj(a),
                    "text_raw": f"#{topic}# " + rng.choice(POST_TEMPLATES).format(a=w1, b=w2),
                    "created_at": stamp(t0), "source": "synthetic"}
            comments, reposts, seen = [], [], {a}
            for _ in range(rng.randint(min_reactors, max_reactors)):
                i = pick(topic, seen)
                if i is None:
                    continue
                seen.add(i)
                it = react(i, topic, t0, 1)
                (reposts if it.pop("_repost") else comments).append(it)
            stack = comments + reposts
            while stack:
                x = stack.pop()
                n_inter += 1
                stack.extend(x.get("comments", []) + x.get("reposts", []))
            post["comments"] = comments
            post["reposts"] = reposts
            post["comments_count"], post["reposts_count"] = len(comments), len(reposts)
            fh.write(orjson.dumps(post))
            fh.write(b"\n")
    profiles = {str(u["id"]): {"screen_name": u["screen_name"], "interests": u["interests"],
                               "description": STYLES[u["style"]]["desc"], "gender": u["gender"],
                               "location": u["location"]} for u in users}
    with atomic_path(out / "profiles.json") as tmp:
        tmp.write_bytes(orjson.dumps(profiles))
    truth = {str(u["id"]): {"interests": u["interests"], "style": u["style"], "repost_prob": u["repost_prob"]}
             for u in users}
    with atomic_path(out / "truth.json") as tmp:
        tmp.write_bytes(orjson.dumps(truth))
    return {"users": n_users, "posts": n_posts, "interactions": n_inter, "seed": seed,
            "files": ["posts.jsonl", "profiles.json", "truth.json"]}
