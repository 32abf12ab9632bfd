-- name: feature_by_stars
-- description: A feature's activity per star rating, with lift (the macro `feature_by_stars`).
-- param: feature INTEGER
-- Over the reviews with tokens and a rating: per rating n_reviews, n_active_reviews,
-- frac_active, mean_max_value (NULL when none is active) and lift = frac_active /
-- (all active reviews / all reviews), NULL when the feature is never active.
WITH base AS (
    SELECT stars, count(*) AS n_reviews FROM reviews
    WHERE n_tokens > 0 AND stars IS NOT NULL GROUP BY stars
),
act AS (SELECT stars, n_active_reviews, sum_max_value FROM feature_stars WHERE feature = :feature),
joined AS (
    SELECT b.stars, b.n_reviews, coalesce(a.n_active_reviews, 0) AS n_active_reviews, a.sum_max_value
    FROM base b LEFT JOIN act a ON a.stars = b.stars
),
overall AS (SELECT sum(n_active_reviews) / sum(n_reviews) AS frac FROM joined)
SELECT j.stars, j.n_reviews, j.n_active_reviews,
       j.n_active_reviews / j.n_reviews AS frac_active,
       j.sum_max_value / nullif(j.n_active_reviews, 0) AS mean_max_value,
       (j.n_active_reviews / j.n_reviews) / nullif(o.frac, 0) AS lift
FROM joined j CROSS JOIN overall o
ORDER BY j.stars;
