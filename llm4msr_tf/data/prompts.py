"""Scenario-level and user-level prompts for the LLM, built only from training interactions.

Following LLM4MSR (Wang et al., CIKM 2024):
- a scenario prompt gives the scenario's description and statistics (users, items,
  interactions, positive rate, top categories, most popular items, overlap with the other
  scenarios) and asks for its characteristics and its relation to the other scenarios;
- a user prompt lists, per scenario, what the user liked and disliked (counts, top
  categories, then titles - or categories, or ids when the source has no text - most recent
  first where timestamps exist) and asks for the user's interests within and across scenarios.

The raw user id opens a user prompt by default ("User 42's movies per scenario"); with
``--no-user-prompt-id`` it reads "This user's movies per scenario", so the id string cannot
make vectors of different users differ and only the history does.

Both are cut to a character budget (``--user-prompt-max-chars``, ``--scenario-prompt-max-chars``;
about 4 characters per token); a truncated prompt says so and how many items it left out.
Only the training split is passed in, so no eval/test interaction can leak into a prompt.
"""
import collections
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from llm4msr_tf.data.base import ITEM, LABEL, RATING, SCENARIO, TIMESTAMP, USER, ItemInfo
from llm4msr_tf.data.prompt_format import Prompt
from llm4msr_tf.data.spec import ScenarioSpec

USER_QUESTION = "Describe this user's interests within each scenario and across scenarios."
SCENARIO_QUESTION = (
    "What are the characteristics of this scenario, and how does it relate to the other scenarios?"
)


def _item_label(item, items: Dict[str, ItemInfo]) -> str:
    # History entries are item ids, or (item id, interaction text) when the source has
    # per-interaction text (e.g. a review summary) and the item has no title of its own.
    note = ""
    if isinstance(item, tuple):
        item, note = item
    info = items.get(item)
    if note and (info is None or not info.title):
        return f'"{note}"'
    info = items.get(item)
    if info is not None and info.title:
        return info.title
    if info is not None and info.categories:
        return "/".join(info.categories[:2])
    return f"#{item}"


def _top_categories(item_ids: Iterable[str], items: Dict[str, ItemInfo], k: int) -> List[Tuple[str, int]]:
    c: collections.Counter = collections.Counter()
    for it in item_ids:
        info = items.get(it)
        if info is not None:
            c.update(info.categories)
    return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def _fit_text(text: str, budget: int) -> Tuple[str, bool]:
    """Cut `text` to `budget` characters at a word boundary; say so when cut."""
    if len(text) <= budget:
        return text, False
    note = " [truncated]"
    cut = text[: max(0, budget - len(note))]
    sp = cut.rfind(" ")
    if sp > len(cut) // 2:
        cut = cut[:sp]
    return cut.rstrip(" ;,") + note, True


class UserPromptBuilder:
    """Builds user-level prompts from a training table, fitting item lists into a budget.

    Per scenario the prompt gives counts and top categories of liked and disliked items, then
    item names round-robin over scenarios (most recent first) while the budget allows. If even
    the counts do not fit, fewer categories are listed, then the history text is cut; the
    closing question is always kept.
    """

    def __init__(self, items: Dict[str, ItemInfo], scenarios: Sequence[ScenarioSpec],
                 max_chars: int = 400, item_noun: str = "items", top_k_categories: int = 3,
                 include_user_id: bool = True):
        self.items = items
        self.include_user_id = include_user_id
        self.names = {s.id: s.name for s in scenarios}
        self.max_chars = max_chars
        self.noun = item_noun
        self.top_k = top_k_categories
        self._cats: Dict[Tuple[int, int], List[Tuple[str, int]]] = {}

    def _part(self, key: Tuple[int, int], verb: str, ids_all: List[str], shown: int, top_k: int) -> str:
        if not ids_all:
            return ""
        if key not in self._cats:
            ids = [e[0] if isinstance(e, tuple) else e for e in ids_all]
            self._cats[key] = _top_categories(ids, self.items, self.top_k)
        cats = self._cats[key][:top_k]
        s = f"{verb} {len(ids_all)}"
        if cats:
            s += " [" + ", ".join(f"{c} {n}" for c, n in cats) + "]"
        if shown:
            s += ": " + "; ".join(_item_label(i, self.items) for i in ids_all[:shown])
        return s

    def _section(self, sid: int, hist: Tuple[List[str], List[str]], shown: List[int], top_k: int) -> str:
        parts = [self._part((sid, 0), "liked", hist[0], shown[0], top_k),
                 self._part((sid, 1), "disliked", hist[1], shown[1], top_k)]
        return f'"{self.names.get(sid, sid)}": ' + "; ".join(p for p in parts if p) + "."

    def build(self, user: str, history: Dict[int, Tuple[List[str], List[str]]], ordered) -> Prompt:
        """Prompt for one user; `history[sid] = (liked items, disliked items)` in the order to list.

        `ordered`: "time" (or True) = most recent first, "rating" = strongest ratings first,
        "" (or False) = no particular order.
        """
        self._cats = {}
        order = {"time": " most recent first.", True: " most recent first.",
                 "rating": " strongest ratings first."}.get(ordered, "")
        who = f"User {user}'s" if self.include_user_id else "This user's"
        head = f"{who} {self.noun} per scenario" + ("," + order if order else ".")
        sids = sorted(history)
        shown = {sid: [0, 0] for sid in sids}
        total = sum(len(l) + len(d) for l, d in history.values())
        budget = self.max_chars - len(USER_QUESTION) - 1

        def body(top_k: int) -> str:
            text = head + " " + " ".join(self._section(s, history[s], shown[s], top_k) for s in sids)
            hidden = total - sum(a + b for a, b in shown.values())
            if hidden:
                text += f" [truncated: {hidden} {self.noun} not named]"
            return text

        top_k = self.top_k
        while top_k > 0 and len(body(top_k)) > budget:
            top_k -= 1
        # Round-robin over scenarios and liked/disliked: name the next most recent item of
        # each list while the prompt still fits the budget.
        open_slots = [(s, j) for s in sids for j in (0, 1) if history[s][j]]
        while open_slots:
            still = []
            for s, j in open_slots:
                if shown[s][j] >= len(history[s][j]):
                    continue
                shown[s][j] += 1
                if len(body(top_k)) <= budget:
                    still.append((s, j))
                else:
                    shown[s][j] -= 1
            open_slots = still
        text = body(top_k)
        truncated = sum(a + b for a, b in shown.values()) < total
        if len(text) > budget:  # even the counts do not fit: cut the history text itself
            text, _ = _fit_text(text, budget)
            truncated = True
        return Prompt(key=str(user), key_type="user", prompt=f"{text} {USER_QUESTION}", truncated=truncated)


def _ordered_train(train: pd.DataFrame, text_column: Optional[str] = None) -> Tuple[pd.DataFrame, str]:
    """Training rows sorted by user, then most recent first; without timestamps, strongest
    ratings first (highest-rated likes, lowest-rated dislikes) where ratings exist, else source order."""
    has_ts = TIMESTAMP in train.columns and bool(train[TIMESTAMP].notna().all())
    has_rating = RATING in train.columns and bool(train[RATING].notna().all())
    t = train[[USER, ITEM, SCENARIO, LABEL] + ([TIMESTAMP] if has_ts else [])
              + ([RATING] if has_rating and not has_ts else [])
              + ([text_column] if text_column else [])].copy()
    t["_pos"] = np.arange(len(t))
    if has_ts:
        t = t.sort_values([USER, TIMESTAMP, "_pos"], ascending=[True, False, False], kind="stable")
        return t, "time"
    if has_rating:
        t["_strength"] = np.where(t[LABEL].to_numpy() == 1, 1.0, -1.0) * t[RATING].to_numpy(dtype=np.float64)
        t = t.sort_values([USER, "_strength", "_pos"], ascending=[True, False, True], kind="stable")
        return t, "rating"
    return t.sort_values([USER, "_pos"], kind="stable"), ""


def build_user_prompts(train: pd.DataFrame, items: Dict[str, ItemInfo], scenarios: Sequence[ScenarioSpec],
                       max_chars: int = 400, item_noun: str = "items", progress: bool = False,
                       text_column: Optional[str] = None, include_user_id: bool = True) -> List[Prompt]:
    """One prompt per user of the training split, from training interactions only.

    `include_user_id=False` leaves the raw id out of the text (the record's key keeps it).

    `text_column` names a per-interaction text column of `train` (e.g. Amazon review summaries)
    used to name items that have no title.
    """
    from tqdm.auto import tqdm

    builder = UserPromptBuilder(items, scenarios, max_chars=max_chars, item_noun=item_noun,
                                include_user_id=include_user_id)
    t, ordered = _ordered_train(train, text_column)
    users = t[USER].astype(str).to_numpy()
    its = t[ITEM].astype(str).to_numpy()
    sc = t[SCENARIO].to_numpy()
    lab = t[LABEL].to_numpy()
    notes = t[text_column].astype(str).to_numpy() if text_column else None
    out = []
    if len(t) == 0:
        return out
    bounds = np.r_[0, np.flatnonzero(users[1:] != users[:-1]) + 1, len(t)]
    for a, b in tqdm(list(zip(bounds[:-1], bounds[1:])), desc="user prompts", unit="user",
                     disable=not progress, mininterval=1.0):
        hist: Dict[int, Tuple[List[str], List[str]]] = {}
        for i in range(a, b):
            liked, disliked = hist.setdefault(int(sc[i]), ([], []))
            entry = (its[i], notes[i].strip()[:60]) if notes is not None and notes[i].strip() else its[i]
            (liked if lab[i] == 1 else disliked).append(entry)
        out.append(builder.build(users[a], hist, ordered))
    return out


def build_scenario_prompts(train: pd.DataFrame, items: Dict[str, ItemInfo], scenarios: Sequence[ScenarioSpec],
                           max_chars: int = 1200, item_noun: str = "items",
                           top_k: int = 5) -> List[Prompt]:
    """One prompt per scenario with its description and training statistics."""
    users_by = {s.id: set() for s in scenarios}
    items_by = {s.id: set() for s in scenarios}
    sc = train[SCENARIO].to_numpy()
    u = train[USER].astype(str).to_numpy()
    it = train[ITEM].astype(str).to_numpy()
    lab = train[LABEL].to_numpy()
    for s in scenarios:
        m = sc == s.id
        users_by[s.id] = set(u[m])
        items_by[s.id] = set(it[m])
    out = []
    for s in scenarios:
        m = sc == s.id
        n = int(m.sum())
        pos = float(lab[m].mean()) if n else 0.0
        lines = [f'Scenario "{s.name}" (id {s.id}) of a multi-scenario recommender.']
        if s.description:
            lines.append(s.description.rstrip(".") + ".")
        lines.append(
            f"Training data: {len(users_by[s.id])} users, {len(items_by[s.id])} {item_noun}, "
            f"{n} interactions, positive rate {pos:.1%}."
        )
        cat_counts = _top_categories(it[m], items, top_k)
        if cat_counts:
            lines.append("Top categories: " + ", ".join(f"{c} {k / max(n, 1):.0%}" for c, k in cat_counts) + ".")
        pos_items = pd.Series(it[m & (lab == 1)]).value_counts()
        pos_items = pos_items.sort_index().sort_values(ascending=False, kind="stable")
        if len(pos_items):
            lines.append(
                f"Most liked {item_noun}: " + "; ".join(_item_label(i, items) for i in pos_items.index[:top_k]) + "."
            )
        others = []
        for o in scenarios:
            if o.id == s.id:
                continue
            uu = len(users_by[s.id] & users_by[o.id]) / max(1, len(users_by[s.id]))
            ii = len(items_by[s.id] & items_by[o.id]) / max(1, len(items_by[s.id]))
            others.append(f'"{o.name}" shares {uu:.0%} of its users and {ii:.0%} of its {item_noun}')
        if others:
            lines.append("Overlap with other scenarios: " + "; ".join(others) + ".")
        body, cut = _fit_text(" ".join(lines), max(0, max_chars - len(SCENARIO_QUESTION) - 1))
        out.append(Prompt(key=str(s.id), key_type="scenario", prompt=f"{body} {SCENARIO_QUESTION}", truncated=cut))
    return out
