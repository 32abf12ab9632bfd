-- name: business-features
-- description: A business's signature features: those over-represented in its reviews compared with the corpus.
-- param: business_id VARCHAR -- the business id (reviews.business_id)
-- param: k INTEGER(1..10000) = 20 -- number of features
-- param: min_reviews INTEGER(1..) = 3 -- minimum support: the business's reviews the feature is active in
-- The macro business_features: lift = frac_active among the business's reviews with
-- tokens / frac_active among all reviews with tokens; ties by support.  An unknown
-- business id gives no rows.
SELECT row_number() OVER (ORDER BY lift DESC, n_active_reviews DESC, feature) AS rank,
       feature, lift, n_active_reviews, n_reviews, frac_active, frac_active_corpus
FROM business_features($business_id, min_reviews := $min_reviews)
ORDER BY rank
LIMIT $k;
