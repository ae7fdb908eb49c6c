"""`movielens`: ML-100K (u.data, u.item, u.user) and ML-1M (ratings.dat|ratings.csv, movies.dat, users.dat).

Scenarios (``--scenario-by``):
- ``age`` (default): user age groups. ML-1M stores age as a bucket code; Scenario-Wise-Rec's
  three domains are {1, 18}, {25}, {35, 45, 50, 56}. ML-100K stores exact ages; the
  equivalent bins are age < 25, 25-34 and >= 35 (ML-1M's code 25 means 25-34).
- ``genre``: genre families of the rated movie - "action & thriller", "drama & romance",
  "comedy & family". A movie with several genres goes to the family most of its genres belong
  to (ties: that order); a movie with no genre ("unknown") goes to "drama & romance".

Label: rating > ``--label-threshold`` (default 3). Extra features: gender, occupation,
item_genre (first listed genre) as strings; age and release year scaled to [0, 1].
Ratings are read in chunks of ``--chunk-size`` rows into compact integer columns, so ML-1M
sized files are never held as text and as a table at the same time. Ratings whose user or
movie is missing from the side files are dropped and counted.
"""
import logging
import os
import re
from typing import Dict, List, Tuple

import numpy as np
import pandas as pd

from llm4msr_tf.data.base import (ITEM, LABEL, RATING, SCENARIO, TIMESTAMP, USER, ItemInfo, LoadedData,
                                  numeric_column, require_file, scale_unit)
from llm4msr_tf.data.config import rating_threshold
from llm4msr_tf.data.spec import ScenarioSpec
from llm4msr_tf.utils.io import UserInputError

log = logging.getLogger(__name__)

GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
               "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
               "Romance", "Sci-Fi", "Thriller", "War", "Western"]
OCCUPATIONS_1M = ["other", "academic/educator", "artist", "clerical/admin", "college/grad student",
                  "customer service", "doctor/health care", "executive/managerial", "farmer",
                  "homemaker", "K-12 student", "lawyer", "programmer", "retired", "sales/marketing",
                  "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
                  "unemployed", "writer"]

AGE_SCENARIOS = [
    ScenarioSpec(0, "age<25", "Viewers younger than 25 (ML-1M age codes 1 and 18): students and young "
                              "adults rating movies on a movie recommendation site"),
    ScenarioSpec(1, "age 25-34", "Viewers aged 25 to 34 (ML-1M age code 25): young working adults"),
    ScenarioSpec(2, "age>=35", "Viewers aged 35 or older (ML-1M age codes 35, 45, 50, 56): "
                               "established adults and seniors"),
]
GENRE_FAMILIES = [
    ("action & thriller", ["Action", "Adventure", "Thriller", "Crime", "War", "Western", "Sci-Fi",
                           "Horror", "Mystery", "Film-Noir", "Fantasy"],
     "Ratings of action, adventure, thriller, crime, war, western, sci-fi, horror, mystery, noir and fantasy movies"),
    ("drama & romance", ["Drama", "Romance", "Documentary", "unknown"],
     "Ratings of dramas, romances and documentaries"),
    ("comedy & family", ["Comedy", "Children's", "Animation", "Musical"],
     "Ratings of comedies, children's, animated and musical movies"),
]


def _age_scenario_1m(age_code: np.ndarray) -> np.ndarray:
    return np.where(age_code < 25, 0, np.where(age_code < 35, 1, 2))


def _genre_family(genres: List[str]) -> int:
    fam = {g: k for k, (_, gs, _) in enumerate(GENRE_FAMILIES) for g in gs}
    counts = np.zeros(len(GENRE_FAMILIES), dtype=int)
    for g in genres or ["unknown"]:
        counts[fam.get(g, 1)] += 1
    return int(np.argmax(counts))


def _year(title: str) -> float:
    m = re.search(r"\((\d{4})\)\s*$", title.strip())
    return float(m.group(1)) if m else np.nan


def _read_lines(path: str, sep: str, ncols: int, encoding: str = "latin-1") -> List[List[str]]:
    """Small side files (users, movies): split each line, naming file and line on a bad one."""
    out = []
    with open(path, encoding=encoding) as fh:
        for n, line in enumerate(fh, 1):
            line = line.rstrip("\n\r")
            if not line:
                continue
            parts = line.split(sep)
            if len(parts) < ncols:
                raise UserInputError(
                    f"{path}, line {n}: expected {ncols} fields separated by {sep!r}, got {len(parts)}; "
                    "fix or remove that line"
                )
            out.append(parts)
    return out


def _read_ratings(path: str, sep: str, names: List[str], header: bool, chunk_size: int,
                  progress: bool) -> Tuple[pd.DataFrame, bool]:
    """Ratings in chunks into compact int columns; returns (frame, has_timestamps)."""
    from tqdm.auto import tqdm

    if header:
        with open(path, encoding="latin-1") as fh:
            first = fh.readline().strip()
        cols = [c.strip().lower() for c in first.split(sep)]
        aliases = {"userid": "user_id", "user": "user_id", "movieid": "movie_id", "item_id": "movie_id",
                   "movie": "movie_id", "item": "movie_id", "time": "timestamp"}
        cols = [aliases.get(c, c) for c in cols]
        missing = [c for c in ("user_id", "movie_id", "rating") if c not in cols]
        if missing:
            raise UserInputError(
                f"{path}: header {first!r} lacks column(s) {missing}; expected user_id,movie_id,rating[,timestamp]"
            )
        names = cols
    use = [c for c in ("user_id", "movie_id", "rating", "timestamp") if c in names]
    reader = pd.read_csv(path, sep=sep, names=names, header=0 if header else None, usecols=use, dtype=str,
                         chunksize=chunk_size, engine="c" if len(sep) == 1 else "python",
                         encoding="latin-1", skip_blank_lines=True)
    parts = []
    offset = 0
    hdr = 1 if header else 0
    bar = tqdm(total=_estimate_rows(path), desc=f"read {os.path.basename(path)}", unit="row",
               disable=not progress, mininterval=1.0)
    for chunk in reader:
        d = {}
        for col, dt in (("user_id", np.int64), ("movie_id", np.int64), ("rating", np.float32),
                        ("timestamp", np.float64)):
            if col in chunk.columns:
                d[col] = numeric_column(chunk[col], path, col, header_lines=hdr, row_offset=offset).to_numpy(dt)
        parts.append(pd.DataFrame(d))
        offset += len(chunk)
        bar.update(len(chunk))
    bar.close()
    if not parts:
        raise UserInputError(f"{path} has no ratings; point --source at a MovieLens folder with ratings")
    df = pd.concat(parts, ignore_index=True)
    return df, "timestamp" in df.columns


def _estimate_rows(path: str) -> int:
    """Rough row count from the first 64 KiB (only sizes the progress bar)."""
    size = os.path.getsize(path)
    with open(path, "rb") as fh:
        sample = fh.read(65536)
    lines = max(1, sample.count(b"\n"))
    return max(1, int(size * lines / max(1, len(sample))))


def _load_100k(src: str, cfg) -> Tuple[pd.DataFrame, pd.DataFrame, Dict[int, Tuple[str, List[str]]], List[str]]:
    data = require_file(os.path.join(src, "u.data"), "MovieLens-100K ratings file u.data")
    item = require_file(os.path.join(src, "u.item"), "MovieLens-100K movie file u.item")
    user = require_file(os.path.join(src, "u.user"), "MovieLens-100K user file u.user")
    ratings, _ = _read_ratings(data, "\t", ["user_id", "movie_id", "rating", "timestamp"], False,
                               cfg.chunk_size, cfg.progress)
    movies = {}
    for parts in _read_lines(item, "|", 24):
        flags = parts[5:24]
        genres = [GENRES_100K[k] for k, f in enumerate(flags) if f == "1"]
        movies[int(parts[0])] = (parts[1], genres)
    rows = _read_lines(user, "|", 5)
    users = pd.DataFrame({
        "user_id": [int(r[0]) for r in rows], "age": [float(r[1]) for r in rows],
        "gender": [r[2] for r in rows], "occupation": [r[3] for r in rows],
    })
    users["age_group"] = np.where(users["age"] < 25, 0, np.where(users["age"] < 35, 1, 2))
    return ratings, users, movies, [data, item, user]


def _load_1m(src: str, cfg) -> Tuple[pd.DataFrame, pd.DataFrame, Dict[int, Tuple[str, List[str]]], List[str]]:
    movies_path = require_file(os.path.join(src, "movies.dat"), "MovieLens-1M movie file movies.dat")
    users_path = require_file(os.path.join(src, "users.dat"), "MovieLens-1M user file users.dat")
    dat, csv = os.path.join(src, "ratings.dat"), os.path.join(src, "ratings.csv")
    if os.path.isfile(dat):
        ratings, _ = _read_ratings(dat, "::", ["user_id", "movie_id", "rating", "timestamp"], False,
                                   cfg.chunk_size, cfg.progress)
        rpath = dat
    else:
        rpath = require_file(csv, "MovieLens-1M ratings (ratings.dat or ratings.csv)")
        ratings, _ = _read_ratings(csv, ",", [], True, cfg.chunk_size, cfg.progress)
    movies = {}
    for parts in _read_lines(movies_path, "::", 3):
        genres = [g for g in parts[2].split("|") if g]
        movies[int(parts[0])] = (parts[1], genres)
    rows = _read_lines(users_path, "::", 5)
    try:
        users = pd.DataFrame({
            "user_id": [int(r[0]) for r in rows], "gender": [r[1] for r in rows],
            "age": [float(r[2]) for r in rows],
            "occupation": [OCCUPATIONS_1M[int(r[3])] if r[3].isdigit() and int(r[3]) < len(OCCUPATIONS_1M)
                           else r[3] for r in rows],
        })
    except ValueError as e:
        raise UserInputError(f"{users_path}: user id and age must be integers ({e}); fix the file") from e
    users["age_group"] = _age_scenario_1m(users["age"].to_numpy())
    return ratings, users, movies, [rpath, movies_path, users_path]


def load(cfg) -> LoadedData:
    """Adapter entry point: detect ML-100K or ML-1M in cfg.source and load it."""
    src = cfg.source
    if not os.path.isdir(src):
        raise UserInputError(f"--source {src} is not a folder; point it at the MovieLens folder (ml-100k or ml-1m)")
    if os.path.isfile(os.path.join(src, "u.data")):
        ratings, users, movies, files = _load_100k(src, cfg)
        name = "movielens-100k"
    elif any(os.path.isfile(os.path.join(src, f)) for f in ("ratings.dat", "ratings.csv", "movies.dat")):
        ratings, users, movies, files = _load_1m(src, cfg)
        name = "movielens-1m"
    else:
        raise UserInputError(
            f"{src} holds neither u.data (MovieLens-100K) nor ratings.dat/ratings.csv (MovieLens-1M); "
            "point --source at an unpacked MovieLens folder"
        )
    source_rows = len(ratings)
    dropped = {}
    known_user = ratings["user_id"].isin(users["user_id"]).to_numpy()
    known_movie = ratings["movie_id"].isin(list(movies)).to_numpy()
    dropped["unknown user"] = int((~known_user).sum())
    dropped["unknown movie"] = int((known_user & ~known_movie).sum())
    ratings = ratings.loc[known_user & known_movie].reset_index(drop=True)

    u = users.set_index("user_id").loc[ratings["user_id"].to_numpy()]
    movie_ids = sorted(movies)
    titles = {m: movies[m][0] for m in movie_ids}
    first_genre = pd.Series({m: (movies[m][1][0] if movies[m][1] else "unknown") for m in movie_ids})
    years = pd.Series({m: _year(movies[m][0]) for m in movie_ids})
    mid = ratings["movie_id"].to_numpy()
    if cfg.scenario_by == "age":
        scenarios = [ScenarioSpec(s.id, s.name, s.description) for s in AGE_SCENARIOS]
        if name == "movielens-100k":
            for s, d in zip(scenarios, ("Viewers younger than 25", "Viewers aged 25 to 34",
                                        "Viewers aged 35 or older")):
                s.description = d + " rating movies on a movie recommendation site"
        scen = u["age_group"].to_numpy()
    else:
        fam = pd.Series({m: _genre_family(movies[m][1]) for m in movie_ids})
        scenarios = [ScenarioSpec(k, n, d) for k, (n, _, d) in enumerate(GENRE_FAMILIES)]
        scen = fam.loc[mid].to_numpy()
    year = years.loc[mid].to_numpy(dtype=np.float64)
    year = np.where(np.isnan(year), np.nanmedian(year) if np.isfinite(year).any() else 0.0, year)
    frame = pd.DataFrame({
        USER: pd.Categorical(ratings["user_id"].astype(str)),
        ITEM: pd.Categorical(ratings["movie_id"].astype(str)),
        SCENARIO: scen.astype(np.int64),
        LABEL: (ratings["rating"].to_numpy() > rating_threshold(cfg)).astype(np.int64),
        "gender": pd.Categorical(u["gender"].to_numpy()),
        "occupation": pd.Categorical(u["occupation"].to_numpy()),
        "item_genre": pd.Categorical(first_genre.loc[mid].to_numpy()),
        "age": scale_unit(pd.Series(u["age"].to_numpy())).to_numpy(),
        "year": scale_unit(pd.Series(year)).to_numpy(),
    })
    frame[RATING] = ratings["rating"].to_numpy()
    if "timestamp" in ratings.columns:
        frame[TIMESTAMP] = ratings["timestamp"].to_numpy()
    items = {str(m): ItemInfo(title=titles[m], categories=list(movies[m][1])) for m in movie_ids}
    log.info("%s: %d ratings read, %d kept", name, source_rows, len(frame))
    return LoadedData(
        name=name + ("-genre" if cfg.scenario_by == "genre" else ""), frame=frame, scenarios=scenarios,
        categorical=["gender", "occupation", "item_genre"], numeric=["age", "year"], items=items,
        source_rows=source_rows, dropped=dropped, item_noun="movies", source_files=files,
    )
