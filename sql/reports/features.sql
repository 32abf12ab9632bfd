-- name: features
-- description: The feature table (density, reviews, max, mean): find dead and dense features.
-- param: sort VARCHAR(density|max|n_reviews|feature) = density -- sort by this, descending (feature: ascending)
-- param: dead BOOLEAN = false -- only dead features (never active)
-- param: dense_above DOUBLE(0..1) = NULL -- only features active on more than this fraction of tokens
-- param: limit INTEGER(0..) = 50 -- at most this many rows (0: all)
-- density = n_active / all tokens; review_density = n_reviews / reviews with tokens.
SELECT feature, n_active, n_reviews, density, review_density, max_value, mean_value
FROM features
WHERE (NOT $dead OR n_active = 0)
  AND ($dense_above IS NULL OR density > $dense_above)
ORDER BY CASE $sort
             WHEN 'density' THEN density
             WHEN 'max' THEN max_value
             WHEN 'n_reviews' THEN n_reviews
         END DESC NULLS LAST,
         feature
LIMIT CASE WHEN $limit = 0 THEN NULL ELSE $limit END;
