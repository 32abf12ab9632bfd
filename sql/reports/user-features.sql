-- name: user-features
-- description: A user's signature features: those over-represented in their reviews compared with the corpus.
-- param: user_id VARCHAR -- the user id (reviews.user_id)
-- param: k INTEGER(1..10000) = 20 -- number of features
-- param: min_reviews INTEGER(1..) = 2 -- minimum support: the user's reviews the feature is active in
-- The macro user_features, as business-features.  An unknown user id gives no rows.
SELECT row_number() OVER (ORDER BY lift DESC, n_active_reviews DESC, feature) AS rank,
       feature, lift, n_active_reviews, n_reviews, frac_active, frac_active_corpus
FROM user_features($user_id, min_reviews := $min_reviews)
ORDER BY rank
LIMIT $k;
