-- name: top_k
-- description: A feature's k strongest activations, value desc, ties by token_pos (the macro `top_k`).
-- param: feature INTEGER
-- param: k INTEGER
-- k <= top materialized reads top_examples; a larger k ranks the feature's activations.
-- With the parameters bound each branch's condition is a constant: Spark drops the
-- branch whose filter is false, and its scans with it.
SELECT rank, token_pos, review_id, position, value, stars, review_idx FROM (
    SELECT CAST(rank AS BIGINT) AS rank, token_pos, review_id, position, value, stars, review_idx
    FROM top_examples
    WHERE feature = :feature AND rank <= :k AND :k <= {{contract TOP_MATERIALIZED}}
    UNION ALL
    SELECT h.rank, h.token_pos, r.review_id, t.position, h.value, r.stars, h.review_idx
    FROM (SELECT CAST(row_number() OVER (ORDER BY value DESC, token_pos) AS BIGINT) AS rank,
                 token_pos, review_idx, value
          FROM activations
          WHERE bucket = :feature div {{contract BUCKET_WIDTH}} AND feature = :feature
            AND :k > {{contract TOP_MATERIALIZED}}) h
    JOIN reviews r ON r.review_idx = h.review_idx
    JOIN tokens t ON t.token_pos = h.token_pos
    WHERE h.rank <= :k
)
ORDER BY rank;
