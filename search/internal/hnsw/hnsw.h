// C interface to hnswlib (header-only C++), used through cgo by hnsw.go.
#ifndef LOOKALIKE_HNSW_H
#define LOOKALIKE_HNSW_H
#include <stddef.h>
#ifdef __cplusplus
extern "C" {
#endif
typedef void *hnsw_index;
// Every function that can fail returns 0 on success, -1 on failure with a
// malloc'ed message in *err (the caller frees it).
int hnsw_new(int dim, size_t max_elements, int m, int ef_construction, size_t seed, hnsw_index *out, char **err);
int hnsw_load(const char *path, int dim, size_t max_elements, hnsw_index *out, char **err);
int hnsw_save(hnsw_index h, const char *path, char **err);
int hnsw_add_batch(hnsw_index h, const float *vecs, const size_t *labels, size_t n, int threads, char **err);
int hnsw_mark_deleted(hnsw_index h, size_t label, char **err);
int hnsw_search(hnsw_index h, const float *q, size_t k, size_t *labels, float *dists, size_t *found, char **err);
void hnsw_set_ef(hnsw_index h, size_t ef);
size_t hnsw_count(hnsw_index h);
size_t hnsw_capacity(hnsw_index h);
void hnsw_free(hnsw_index h);
#ifdef __cplusplus
}
#endif
#endif
