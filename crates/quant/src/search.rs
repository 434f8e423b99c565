//! The scale searches of ggml's quantizers (`make_qx_quants`, `make_q3_quants`, `make_qkx2_quants`,
//! `make_qkx3_quants`, `make_qp_quants`), shared by the k-quants and the imatrix paths of the
//! legacy 32-element types.
