-- name: top_k_contexts
-- description: top_k with each token's context window (the macro `top_k_contexts`).
-- param: feature INTEGER
-- param: k INTEGER
-- param: before INTEGER -- tokens before (the contract's default: 20)
-- param: after INTEGER -- tokens after (the contract's default: 10)
-- The window: the review's tokens with position in [position - before, position + after];
-- left_context || token || right_context is text[char_start(first) : char_end(last)],
-- NULL where the review's offsets are not trusted.  k <= top materialized with the default
-- window reads top_examples; otherwise the top rows are ranked and their windows found in
-- tokens (the branch not taken is a constant false filter, dropped by Spark).
SELECT * FROM (
    SELECT CAST(rank AS BIGINT) AS rank, token_pos, review_id, position, value, stars, review_idx,
           left_context, token, right_context
    FROM top_examples
    WHERE feature = :feature AND rank <= :k AND :k <= {{contract TOP_MATERIALIZED}}
      AND :before = {{contract DEFAULT_BEFORE}} AND :after = {{contract DEFAULT_AFTER}}
    UNION ALL
    SELECT * FROM (
        WITH top AS (
            SELECT h.rank, h.token_pos, r.review_id, t.position, h.value, r.stars, h.review_idx,
                   t.char_start, t.char_end, r.text
            FROM (SELECT CAST(row_number() OVER (ORDER BY value DESC, token_pos) AS BIGINT) AS rank,
                         token_pos, review_idx, value
                  FROM activations
                  WHERE bucket = :feature div {{contract BUCKET_WIDTH}} AND feature = :feature
                    AND NOT (:k <= {{contract TOP_MATERIALIZED}} AND :before = {{contract DEFAULT_BEFORE}}
                             AND :after = {{contract DEFAULT_AFTER}})) h
            JOIN reviews r ON r.review_idx = h.review_idx
            JOIN tokens t ON t.token_pos = h.token_pos
            WHERE h.rank <= :k
        ),
        win AS (
            SELECT top.token_pos, min(w.char_start) AS lo, max(w.char_end) AS hi
            FROM top
            JOIN tokens w
              ON w.review_idx = top.review_idx
             AND w.position BETWEEN top.position - greatest(:before, 0) AND top.position + greatest(:after, 0)
            GROUP BY top.token_pos
        )
        SELECT top.rank, top.token_pos, top.review_id, top.position, top.value, top.stars, top.review_idx,
               substring(top.text, win.lo + 1, top.char_start - win.lo) AS left_context,
               substring(top.text, top.char_start + 1, top.char_end - top.char_start) AS token,
               substring(top.text, top.char_end + 1, win.hi - top.char_end) AS right_context
        FROM top LEFT JOIN win ON win.token_pos = top.token_pos
    )
)
ORDER BY rank;
