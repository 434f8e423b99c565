//! The k-quants: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and Q8_K super-blocks of 256 elements.
