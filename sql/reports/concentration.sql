-- name: concentration
-- description: Features concentrated in a few businesses (or users) beyond chance: top-10 share and Gini index against what a random placement of as many reviews gives.
-- param: by VARCHAR(business|user) = business -- concentration across businesses or users
-- param: sort VARCHAR(z|excess|gini) = z -- z: Gini's standardized excess over chance; excess: Gini minus its expectation; gini: the raw index (rewards rarity)
-- param: min_reviews INTEGER(1..) = 20 -- only features active in at least this many reviews
-- param: k INTEGER(1..100000) = 20 -- number of features
-- param: feature INTEGER = NULL -- show only this feature (with its rank)
-- From the macro concentration (precomputed at build).  top10_share: share of the
-- feature's active reviews from its 10 most frequent businesses (users); gini: Gini
-- index of its active-review counts over every business (user) with reviews, zeros
-- included (1 = all in one).  *_expected: the mean when as many reviews are drawn at
-- random (a seeded simulation at build); gini_z = (gini - gini_expected) / its sd.
-- corpus_*: the same for all reviews, i.e. what a feature active everywhere scores.
WITH c AS (
    SELECT feature, n_reviews,
           CASE $by WHEN 'user' THEN n_users ELSE n_businesses END AS n_groups,
           CASE $by WHEN 'user' THEN top10_user_share ELSE top10_business_share END AS top10_share,
           CASE $by WHEN 'user' THEN top10_user_share_expected ELSE top10_business_share_expected END
               AS top10_share_expected,
           CASE $by WHEN 'user' THEN top10_user_share_z ELSE top10_business_share_z END AS top10_share_z,
           CASE $by WHEN 'user' THEN user_gini ELSE business_gini END AS gini,
           CASE $by WHEN 'user' THEN user_gini_expected ELSE business_gini_expected END AS gini_expected,
           CASE $by WHEN 'user' THEN user_gini_excess ELSE business_gini_excess END AS gini_excess,
           CASE $by WHEN 'user' THEN user_gini_sd ELSE business_gini_sd END AS gini_sd,
           CASE $by WHEN 'user' THEN user_gini_z ELSE business_gini_z END AS gini_z,
           CASE $by WHEN 'user' THEN corpus_top10_user_share ELSE corpus_top10_business_share END
               AS corpus_top10_share,
           CASE $by WHEN 'user' THEN corpus_user_gini ELSE corpus_business_gini END AS corpus_gini
    FROM concentration(min_reviews := 1)
),
ranked AS (
    SELECT feature,
           row_number() OVER (
               ORDER BY CASE $sort WHEN 'z' THEN gini_z WHEN 'excess' THEN gini_excess ELSE gini END DESC NULLS LAST,
                        gini DESC, top10_share DESC, feature) AS rank
    FROM c WHERE n_reviews >= $min_reviews
)
SELECT r.rank, c.*
FROM c LEFT JOIN ranked r ON r.feature = c.feature
WHERE ($feature IS NULL AND r.rank <= $k) OR c.feature = $feature
ORDER BY r.rank NULLS LAST, c.feature;
