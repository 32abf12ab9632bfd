-- name: concentration
-- description: Features concentrated in a few businesses (or users): top-10 share and Gini index, against the corpus baseline.
-- param: by VARCHAR(business|user) = business -- concentration across businesses or users
-- param: min_reviews INTEGER(1..) = 20 -- only features active in at least this many reviews
-- param: k INTEGER(1..100000) = 20 -- number of features
-- param: feature INTEGER = NULL -- show only this feature (with its rank)
-- From the macro concentration (precomputed at build).  top10_share: share of the
-- feature's active reviews from its 10 most frequent businesses (users); gini: Gini
-- index of its active-review counts over every business (user) with reviews, zeros
-- included (1 = all in one).  corpus_*: the same for all reviews, i.e. what a feature
-- active everywhere scores.  Few active reviews inflate both: mind min_reviews.
WITH c AS (
    SELECT feature, n_reviews,
           CASE $by WHEN 'user' THEN n_users ELSE n_businesses END AS n_groups,
           CASE $by WHEN 'user' THEN top10_user_share ELSE top10_business_share END AS top10_share,
           CASE $by WHEN 'user' THEN user_gini ELSE business_gini END AS gini,
           CASE $by WHEN 'user' THEN corpus_top10_user_share ELSE corpus_top10_business_share END
               AS corpus_top10_share,
           CASE $by WHEN 'user' THEN corpus_user_gini ELSE corpus_business_gini END AS corpus_gini
    FROM concentration(min_reviews := 1)
),
ranked AS (
    SELECT feature, row_number() OVER (ORDER BY gini DESC, top10_share DESC, feature) AS rank
    FROM c WHERE n_reviews >= $min_reviews
)
SELECT r.rank, c.*
FROM c LEFT JOIN ranked r ON r.feature = c.feature
WHERE ($feature IS NULL AND r.rank <= $k) OR c.feature = $feature
ORDER BY r.rank NULLS LAST, c.feature;
