-- name: macros
-- description: The warehouse's table macros: the query contract of README.md.
-- Every macro that reads one feature filters on `bucket = bucket_of(feat)` as well as on
-- `feature = feat`: the first prunes hive partitions, the second row groups inside the
-- bucket's file.  bucket_of(), top_materialized(), review_top(), default_before() and
-- default_after() are the contract's constants (warehouse.contract) as macros: sql/contract.sql.
-- `*_native` are DuckDB tables in this file made from the Parquet tables at build time
-- (sql/native.sql): a lookup in them costs no Parquet footer parse, so the macros read
-- them; `top_examples` is a view over one of them.

CREATE OR REPLACE MACRO activation(tp, feat) AS coalesce((
    SELECT max(a.value) FROM activations a
    WHERE a.bucket = bucket_of(feat) AND a.feature = feat AND a.token_pos = tp
), 0.0);

CREATE OR REPLACE MACRO feature_tokens(feat) AS TABLE
SELECT a.token_pos, a.review_idx, r.review_id, t.position, a.value
FROM activations a
JOIN reviews_native r ON r.review_idx = a.review_idx
JOIN tokens t ON t.token_pos = a.token_pos
WHERE a.bucket = bucket_of(feat) AND a.feature = feat
ORDER BY a.token_pos;

-- Fast paths.  top_examples holds, per feature, the top_materialized() strongest
-- activations with everything top_k returns and the contexts of the default window
-- (default_before() tokens before, default_after() after), so k <= top_materialized()
-- reads one row group of one table.  A larger k or another window takes the general path.
-- With the parameters bound the branch conditions are constants: the fast branch's
-- WHERE folds to false, and the general branch sits under `LIMIT <0 unless taken>`,
-- which removes its whole plan (a false WHERE pushed into it would leave its joins,
-- and their Parquet scans, in the plan).  tests/test_contract_paths.py checks both.
CREATE OR REPLACE MACRO top_k(feat, k) AS TABLE
SELECT rank, token_pos, review_id, position, value, stars, review_idx FROM (
    SELECT rank::BIGINT AS rank, token_pos, review_id, position, value, stars, review_idx
    FROM top_examples
    WHERE feature = feat AND rank <= k AND k <= top_materialized()
    UNION ALL
    (SELECT * FROM (
        SELECT h.rank, h.token_pos, r.review_id, t.position, h.value, r.stars, h.review_idx
        FROM (SELECT row_number() OVER (ORDER BY value DESC, token_pos) AS rank, token_pos, review_idx, value
              FROM (SELECT token_pos, review_idx, value FROM activations
                    WHERE bucket = bucket_of(feat) AND feature = feat
                    ORDER BY value DESC, token_pos LIMIT greatest(k, 0))) h
        JOIN reviews_native r ON r.review_idx = h.review_idx
        JOIN tokens t ON t.token_pos = h.token_pos
    ) LIMIT CASE WHEN k > top_materialized() THEN greatest(k, 0) ELSE 0 END)
)
ORDER BY rank;

-- The context window of each token position in `positions` (a LIST of token_pos), by
-- the rule of top_k_contexts: the review's tokens with position in
-- [position - before, position + after]; left_context || token || right_context is a
-- slice of the review's text; NULL contexts where offsets are unknown.
CREATE OR REPLACE MACRO token_contexts(positions, before := default_before(), after := default_after()) AS TABLE
WITH p AS (
    SELECT t.token_pos, t.review_idx, t.position, t.char_start, t.char_end
    FROM tokens t
    WHERE t.token_pos IN (SELECT unnest(positions))
),
win AS (
    SELECT p.token_pos, min(t.char_start) AS lo, max(t.char_end) AS hi
    FROM p JOIN tokens t
      ON t.review_idx = p.review_idx
     AND t.position BETWEEN p.position - greatest(before, 0) AND p.position + greatest(after, 0)
    GROUP BY p.token_pos
)
SELECT p.token_pos, p.review_idx, r.review_id, p.position, r.stars, r.business_id, r.user_id,
       substring(r.text, win.lo + 1, p.char_start - win.lo) AS left_context,
       substring(r.text, p.char_start + 1, p.char_end - p.char_start) AS token,
       substring(r.text, p.char_end + 1, win.hi - p.char_end) AS right_context
FROM p
JOIN reviews_native r ON r.review_idx = p.review_idx
LEFT JOIN win ON win.token_pos = p.token_pos;

CREATE OR REPLACE MACRO top_k_contexts(feat, k, before := default_before(), after := default_after()) AS TABLE
SELECT * FROM (
    SELECT rank::BIGINT AS rank, token_pos, review_id, position, value, stars, review_idx,
           left_context, token, right_context
    FROM top_examples
    WHERE feature = feat AND rank <= k AND k <= top_materialized() AND before = default_before() AND after = default_after()
    UNION ALL
    (SELECT * FROM (
    WITH top AS (SELECT * FROM top_k(feat, k))
    SELECT top.rank, top.token_pos, top.review_id, top.position, top.value, top.stars, top.review_idx,
           c.left_context, c.token, c.right_context
    FROM top
    JOIN token_contexts((SELECT list(token_pos) FROM top), before := before, after := after) c
      ON c.token_pos = top.token_pos
    ) LIMIT CASE WHEN coalesce(k <= top_materialized() AND before = default_before() AND after = default_after(), false) THEN 0 ELSE greatest(k, 0) END)
)
ORDER BY rank;

CREATE OR REPLACE MACRO review_tokens(rid) AS TABLE
SELECT t.position, t.token_pos, t.token_id, t.token, t.char_start, t.char_end
FROM tokens t
JOIN reviews_native r ON r.review_idx = t.review_idx
WHERE r.review_id = rid
  AND t.token_pos BETWEEN r.first_token_pos AND r.last_token_pos
ORDER BY t.position;

CREATE OR REPLACE MACRO feature_by_stars(feat) AS TABLE
WITH base AS (
    SELECT stars, count(*) AS n_reviews FROM reviews_native
    WHERE n_tokens > 0 AND stars IS NOT NULL GROUP BY stars
),
act AS (SELECT stars, n_active_reviews, sum_max_value FROM feature_stars WHERE feature = feat),
joined AS (
    SELECT b.stars, b.n_reviews, coalesce(a.n_active_reviews, 0) AS n_active_reviews,
           a.sum_max_value
    FROM base b LEFT JOIN act a ON a.stars = b.stars
),
overall AS (SELECT sum(n_active_reviews) / sum(n_reviews) AS frac FROM joined)
SELECT j.stars, j.n_reviews, j.n_active_reviews,
       j.n_active_reviews / j.n_reviews AS frac_active,
       j.sum_max_value / nullif(j.n_active_reviews, 0) AS mean_max_value,
       (j.n_active_reviews / j.n_reviews) / nullif(o.frac, 0) AS lift
FROM joined j CROSS JOIN overall o
ORDER BY j.stars;

-- k <= review_top() reads the review's row group of review_top_features (each review's
-- review_top() strongest features, ranked the same way); a larger k scans.
CREATE OR REPLACE MACRO review_features(rid, k) AS TABLE
SELECT feature, max_value, n_tokens_active FROM (
    SELECT t.feature, t.max_value, t.n_tokens_active
    FROM review_top_features t
    JOIN (SELECT review_idx FROM reviews_native WHERE review_id = rid) r ON r.review_idx = t.review_idx
    WHERE t.rank <= k AND k <= review_top()
    UNION ALL
    (SELECT * FROM (
        SELECT a.feature, max(a.value) AS max_value, count(*) AS n_tokens_active
        FROM activations a
        JOIN reviews_native r ON r.review_idx = a.review_idx
        WHERE r.review_id = rid
          AND a.token_pos BETWEEN r.first_token_pos AND r.last_token_pos
        GROUP BY a.feature
        ORDER BY max_value DESC, a.feature
    ) LIMIT CASE WHEN k > review_top() THEN greatest(k, 0) ELSE 0 END)
)
ORDER BY max_value DESC, feature;
