-- name: star-features
-- description: The features most over-represented in S-star reviews, by lift, with support.
-- param: stars INTEGER(1..5) -- the star rating S
-- param: k INTEGER(1..10000) = 20 -- number of features
-- param: min_reviews INTEGER(1..) = 10 -- minimum support: S-star reviews the feature is active in
-- Over the reviews that have tokens and a star rating (as feature_by_stars).
-- lift = frac_active (among S-star reviews) / frac_active_all (among all reviews);
-- n_active_reviews is the support.  Ties by support, then feature id.
WITH base AS (
    SELECT stars, count(*) AS n_reviews
    FROM reviews
    WHERE n_tokens > 0 AND stars IS NOT NULL
    GROUP BY stars
),
total AS (SELECT sum(n_reviews) AS n_reviews FROM base),
target AS (SELECT n_reviews FROM base WHERE stars = $stars),
per_feature AS (
    SELECT feature,
           sum(n_active_reviews) AS n_active_all,
           sum(n_active_reviews) FILTER (WHERE stars = $stars) AS n_active_reviews,
           sum(sum_max_value) FILTER (WHERE stars = $stars) AS sum_max_value
    FROM feature_stars
    GROUP BY feature
),
scored AS (
    SELECT p.feature,
           p.n_active_reviews,
           p.n_active_reviews / t.n_reviews AS frac_active,
           p.n_active_all / tot.n_reviews AS frac_active_all,
           (p.n_active_reviews / t.n_reviews) / (p.n_active_all / tot.n_reviews) AS lift,
           p.sum_max_value / p.n_active_reviews AS mean_max_value
    FROM per_feature p CROSS JOIN target t CROSS JOIN total tot
    WHERE p.n_active_reviews >= $min_reviews
)
SELECT row_number() OVER (ORDER BY s.lift DESC, s.n_active_reviews DESC, s.feature) AS rank,
       s.feature, s.lift, s.n_active_reviews, s.frac_active, s.frac_active_all, s.mean_max_value,
       f.density
FROM scored s
JOIN features f ON f.feature = s.feature
ORDER BY rank
LIMIT $k;
