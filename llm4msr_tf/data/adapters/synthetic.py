"""`synthetic`: a seeded multi-scenario shop with planted structure (the embedded default).

The world:
- 8 product categories; each item has a category, a title made of category words
  ("Compact Wireless Headphones"), a price and a latent quality;
- 3 scenarios with text descriptions: "home feed" (popularity-driven exposure, moderate click
  rate), "search" (exposure follows the user's intent, clicks follow taste closely) and "deals"
  (cheap items, price-sensitive clicks);
- users with a sparse taste over categories that is SHARED across scenarios, a price
  sensitivity, an uneven activity across scenarios (many users are sparse in some scenario)
  and a small user x scenario bias: click behaviour is scenario-specific, taste is not.

Titles and categories carry the taste, so a text model reading a user's training history
(the user prompt) learns something real about that user in every scenario - most useful
where the user's own history in a scenario is thin. Labels are drawn from the click model and
never appear in text; prompts use the training split only.
"""
import logging
from typing import Dict, List

import numpy as np
import pandas as pd

from llm4msr_tf.data.base import ITEM, LABEL, SCENARIO, TIMESTAMP, USER, ItemInfo, LoadedData
from llm4msr_tf.data.spec import ScenarioSpec
from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger(__name__)

CATEGORIES: Dict[str, List[str]] = {
    "Electronics": ["Headphones", "Charger", "Speaker", "Smartwatch", "Keyboard", "Webcam", "Power Bank"],
    "Books": ["Mystery Novel", "Cookbook", "Biography", "Poetry Collection", "Travel Guide", "Sci-Fi Novel"],
    "Outdoor": ["Tent", "Hiking Boots", "Backpack", "Sleeping Bag", "Camping Stove", "Trekking Poles"],
    "Kitchen": ["Skillet", "Blender", "Knife Set", "Coffee Grinder", "Cutting Board", "Teapot"],
    "Fashion": ["Denim Jacket", "Sneakers", "Wool Scarf", "Leather Belt", "Sunglasses", "Raincoat"],
    "Toys & Games": ["Board Game", "Jigsaw Puzzle", "Game Controller", "Building Blocks", "Card Game"],
    "Music": ["Guitar Strings", "Vinyl Record", "Ukulele", "Drum Sticks", "Microphone", "Capo"],
    "Beauty": ["Face Cream", "Perfume", "Shampoo", "Lip Balm", "Hair Dryer", "Nail Polish"],
}
ADJECTIVES = ["Compact", "Classic", "Premium", "Wireless", "Handmade", "Eco", "Deluxe", "Vintage",
              "Portable", "Ultra", "Everyday", "Pro"]
AGE_GROUPS = ["18-24", "25-34", "35-49", "50+"]

SCENARIOS = [
    ScenarioSpec(0, "home feed",
                 "The app's home page feed: items are pushed without a query; exposure mixes popular "
                 "items with personalised picks, so clicks depend on broad taste and on popularity"),
    ScenarioSpec(1, "search",
                 "Results shown after the user types a query: the user arrives with intent, so shown "
                 "items match their interests and clicks follow their strongest tastes closely"),
    ScenarioSpec(2, "deals",
                 "A discount tab with time-limited offers: cheap items dominate, users are price "
                 "sensitive and click bargains even outside their usual interests"),
]

# Per scenario: base logit, weight of taste match, of item quality, of price x price-sensitivity.
_CLICK = np.array([
    [-0.7, 1.4, 0.6, 0.2],
    [0.2, 2.2, 0.2, 0.1],
    [-0.4, 0.7, 0.1, 1.6],
])


def generate(num_users: int, num_items: int, interactions_per_user: int, seed: int) -> LoadedData:
    """Generate the synthetic world (deterministic for a given seed and size)."""
    if num_users < 1 or num_items < len(CATEGORIES) or interactions_per_user < 3:
        raise UserInputError(
            f"synthetic world too small: --num-users >= 1, --num-items >= {len(CATEGORIES)}, "
            f"--interactions-per-user >= 3 (got {num_users}, {num_items}, {interactions_per_user})"
        )
    rng = np.random.default_rng(seed)
    cats = list(CATEGORIES)
    K, S = len(cats), len(SCENARIOS)

    # Items: every category gets items; titles are category words; price by category + noise.
    item_cat = np.r_[np.arange(K), rng.integers(0, K, num_items - K)]
    rng.shuffle(item_cat)
    quality = rng.normal(0, 1, num_items)
    cat_price = rng.uniform(0.5, 2.0, K)
    price = np.exp(np.log(cat_price[item_cat] * 30) + rng.normal(0, 0.6, num_items))
    log_price = np.log(price)
    price_z = (log_price - log_price.mean()) / (log_price.std() + 1e-9)
    item_ids = [f"i{j:05d}" for j in range(num_items)]
    items: Dict[str, ItemInfo] = {}
    seen_titles = set()
    for j in range(num_items):
        c = cats[item_cat[j]]
        noun = CATEGORIES[c][rng.integers(len(CATEGORIES[c]))]
        title = f"{ADJECTIVES[rng.integers(len(ADJECTIVES))]} {noun}"
        k = 2
        while title in seen_titles:  # keep titles unique so prompts name one item each
            title = f"{title.split(' No.')[0]} No.{k}"
            k += 1
        seen_titles.add(title)
        items[item_ids[j]] = ItemInfo(title=title, categories=[c])

    # Users: sparse taste over categories (shared by all scenarios), price sensitivity,
    # activity spread unevenly over scenarios, user x scenario bias.
    taste = rng.dirichlet(np.full(K, 0.35), num_users)
    age = rng.integers(0, len(AGE_GROUPS), num_users)
    price_sens = rng.normal(0, 1, num_users) + 0.4 * (1.5 - age)  # younger users chase bargains
    activity = rng.dirichlet(np.full(S, 1.0), num_users)
    user_sc_bias = rng.normal(0, 0.4, (num_users, S))
    n_per_user = np.maximum(5, rng.poisson(interactions_per_user, num_users))

    popularity = np.exp(0.8 * quality)
    cheapness = np.exp(-1.2 * price_z)
    rows_u, rows_i, rows_s = [], [], []
    for u in range(num_users):
        n = int(n_per_user[u])
        sc = rng.choice(S, size=n, p=activity[u])
        # Exposure differs by scenario: feed = popularity + taste, search = taste, deals = cheapness.
        w_taste = taste[u][item_cat]
        probs = [
            0.5 * popularity / popularity.sum() + 0.5 * w_taste / w_taste.sum(),
            0.85 * w_taste / w_taste.sum() + 0.15 / num_items,
            0.7 * cheapness / cheapness.sum() + 0.3 * w_taste / w_taste.sum(),
        ]
        for s in range(S):
            m = int((sc == s).sum())
            if m:
                rows_i.append(rng.choice(num_items, size=m, p=probs[s]))
                rows_u.append(np.full(m, u))
                rows_s.append(np.full(m, s))
    uu = np.concatenate(rows_u)
    ii = np.concatenate(rows_i)
    ss = np.concatenate(rows_s)
    # Drop repeated exposures of the same item to the same user in the same scenario.
    key = (uu.astype(np.int64) * num_items + ii) * S + ss
    _, first = np.unique(key, return_index=True)
    first.sort()
    uu, ii, ss = uu[first], ii[first], ss[first]

    match = np.log(K * taste[uu, item_cat[ii]] + 0.05)  # > 0 for favourite categories
    logit = (_CLICK[ss, 0] + _CLICK[ss, 1] * match + _CLICK[ss, 2] * quality[ii]
             - _CLICK[ss, 3] * price_sens[uu] * price_z[ii] + user_sc_bias[uu, ss])
    label = (rng.random(len(uu)) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    ts = rng.uniform(0, 60 * 86400, len(uu)).round()  # 60 days of logs, in seconds

    frame = pd.DataFrame({
        USER: pd.Categorical([f"u{u:05d}" for u in uu]),
        ITEM: pd.Categorical([item_ids[i] for i in ii]),
        SCENARIO: ss.astype(np.int64),
        LABEL: label,
        TIMESTAMP: ts,
        "user_age_group": pd.Categorical([AGE_GROUPS[a] for a in age[uu]]),
        "item_category": pd.Categorical([cats[c] for c in item_cat[ii]]),
        "item_price": ((log_price[ii] - log_price.min()) / (np.ptp(log_price) + 1e-9)).astype(np.float32),
    })
    log.info("synthetic world: %d users, %d items, %d interactions, positive rate %.3f",
             num_users, num_items, len(frame), label.mean())
    return LoadedData(
        name="synthetic", frame=frame, scenarios=list(SCENARIOS),
        categorical=["user_age_group", "item_category"], numeric=["item_price"],
        items=items, source_rows=len(frame), item_noun="products",
        source_files=[f"synthetic(seed={seed})"],
    )


def load(cfg) -> LoadedData:
    """Adapter entry point: the synthetic world sized by --num-users/--num-items/--interactions-per-user."""
    return generate(cfg.num_users, cfg.num_items, cfg.interactions_per_user, cfg.seed)
