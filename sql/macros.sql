-- name: macros
-- description: The warehouse's table macros: the query contract of README.md.
-- Every macro that reads one feature filters on `bucket = feat // 64` as well as on
-- `feature = feat`: the first prunes hive partitions (64 = etl.build.BUCKET_WIDTH),
-- the second row groups inside the bucket's file.

CREATE OR REPLACE MACRO activation(tp, feat) AS coalesce((
    SELECT max(a.value) FROM activations a
    WHERE a.bucket = feat // 64 AND a.feature = feat AND a.token_pos = tp
), 0.0);

CREATE OR REPLACE MACRO feature_tokens(feat) AS TABLE
SELECT a.token_pos, a.review_idx, r.review_id, t.position, a.value
FROM activations a
JOIN reviews r ON r.review_idx = a.review_idx
JOIN tokens t ON t.token_pos = a.token_pos
WHERE a.bucket = feat // 64 AND a.feature = feat
ORDER BY a.token_pos;

-- k <= 100 is answered from the materialized top_examples (100 =
-- etl.build.TOP_MATERIALIZED); a larger k scans the feature.  The branch whose
-- constant condition is false is pruned by the optimizer.
CREATE OR REPLACE MACRO top_k(feat, k) AS TABLE
WITH hits AS (
    SELECT rank, token_pos, review_idx, value
    FROM top_examples
    WHERE feature = feat AND rank <= k AND k <= 100
    UNION ALL
    SELECT row_number() OVER (ORDER BY value DESC, token_pos) AS rank, token_pos, review_idx, value
    FROM (SELECT token_pos, review_idx, value FROM activations
          WHERE bucket = feat // 64 AND feature = feat AND k > 100
          ORDER BY value DESC, token_pos LIMIT greatest(k, 0))
)
SELECT h.rank::BIGINT AS rank, h.token_pos, r.review_id, t.position, h.value, r.stars, h.review_idx
FROM hits h
JOIN reviews r ON r.review_idx = h.review_idx
JOIN tokens t ON t.token_pos = h.token_pos
ORDER BY h.rank;

CREATE OR REPLACE MACRO top_k_contexts(feat, k, before := 20, after := 10) AS TABLE
WITH top AS (SELECT * FROM top_k(feat, k)),
win AS (
    SELECT top.rank, min(t.char_start) AS lo, max(t.char_end) AS hi
    FROM top JOIN tokens t
      ON t.review_idx = top.review_idx
     AND t.position BETWEEN top.position - greatest(before, 0) AND top.position + greatest(after, 0)
    GROUP BY top.rank
)
SELECT top.rank, top.token_pos, top.review_id, top.position, top.value, top.stars, top.review_idx,
       substring(r.text, win.lo + 1, tt.char_start - win.lo) AS left_context,
       substring(r.text, tt.char_start + 1, tt.char_end - tt.char_start) AS token,
       substring(r.text, tt.char_end + 1, win.hi - tt.char_end) AS right_context
FROM top
JOIN reviews r ON r.review_idx = top.review_idx
JOIN tokens tt ON tt.token_pos = top.token_pos
LEFT JOIN win ON win.rank = top.rank
ORDER BY top.rank;

CREATE OR REPLACE MACRO review_tokens(rid) AS TABLE
SELECT t.position, t.token_pos, t.token_id, t.token, t.char_start, t.char_end
FROM tokens t
JOIN reviews r ON r.review_idx = t.review_idx
WHERE r.review_id = rid
  AND t.token_pos BETWEEN r.first_token_pos AND r.last_token_pos
ORDER BY t.position;

CREATE OR REPLACE MACRO feature_by_stars(feat) AS TABLE
WITH base AS (
    SELECT stars, count(*) AS n_reviews FROM reviews
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

CREATE OR REPLACE MACRO review_features(rid, k) AS TABLE
SELECT a.feature, max(a.value) AS max_value, count(*) AS n_tokens_active
FROM activations a
JOIN reviews r ON r.review_idx = a.review_idx
WHERE r.review_id = rid
  AND a.token_pos BETWEEN r.first_token_pos AND r.last_token_pos
GROUP BY a.feature
ORDER BY max_value DESC, a.feature
LIMIT greatest(k, 0);
