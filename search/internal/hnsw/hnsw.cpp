//go:build cgo && !nohnswlib

#include "hnsw.h"

#include <hnswlib/hnswlib.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

struct Index {
	hnswlib::InnerProductSpace space;
	hnswlib::HierarchicalNSW<float> *alg;
	explicit Index(int dim) : space(dim), alg(nullptr) {}
	~Index() { delete alg; }
};

void set_err(char **err, const std::string &msg) {
	if (err == nullptr) return;
	*err = static_cast<char *>(std::malloc(msg.size() + 1));
	std::memcpy(*err, msg.c_str(), msg.size() + 1);
}

}  // namespace

extern "C" {

int hnsw_new(int dim, size_t max_elements, int m, int ef_construction, size_t seed, hnsw_index *out, char **err) {
	Index *ix = nullptr;
	try {
		ix = new Index(dim);
		ix->alg = new hnswlib::HierarchicalNSW<float>(&ix->space, max_elements, m, ef_construction, seed);
		*out = ix;
		return 0;
	} catch (const std::exception &e) {
		delete ix;
		set_err(err, e.what());
	} catch (...) {
		delete ix;
		set_err(err, "hnswlib: unknown error");
	}
	return -1;
}

int hnsw_load(const char *path, int dim, size_t max_elements, hnsw_index *out, char **err) {
	Index *ix = nullptr;
	try {
		ix = new Index(dim);
		ix->alg = new hnswlib::HierarchicalNSW<float>(&ix->space, std::string(path), false, max_elements);
		*out = ix;
		return 0;
	} catch (const std::exception &e) {
		delete ix;
		set_err(err, e.what());
	} catch (...) {
		delete ix;
		set_err(err, "hnswlib: unknown error");
	}
	return -1;
}

int hnsw_save(hnsw_index h, const char *path, char **err) {
	try {
		static_cast<Index *>(h)->alg->saveIndex(std::string(path));
		return 0;
	} catch (const std::exception &e) {
		set_err(err, e.what());
	}
	return -1;
}

int hnsw_add_batch(hnsw_index h, const float *vecs, const size_t *labels, size_t n, int threads, char **err) {
	Index *ix = static_cast<Index *>(h);
	try {
		size_t need = ix->alg->cur_element_count + n;
		if (need > ix->alg->max_elements_) {
			size_t grow = ix->alg->max_elements_ * 2;
			if (grow < need) grow = need;
			ix->alg->resizeIndex(grow);
		}
		size_t dim = *static_cast<size_t *>(ix->space.get_dist_func_param());
		if (threads <= 1 || n < 64) {
			for (size_t i = 0; i < n; i++) ix->alg->addPoint(vecs + i * dim, labels[i]);
			return 0;
		}
		std::atomic<size_t> next(0);
		std::mutex mu;
		std::string first_err;
		std::vector<std::thread> pool;
		for (int t = 0; t < threads; t++) {
			pool.emplace_back([&]() {
				for (;;) {
					size_t i = next.fetch_add(1);
					if (i >= n) return;
					try {
						ix->alg->addPoint(vecs + i * dim, labels[i]);
					} catch (const std::exception &e) {
						std::lock_guard<std::mutex> g(mu);
						if (first_err.empty()) first_err = e.what();
					}
				}
			});
		}
		for (auto &th : pool) th.join();
		if (!first_err.empty()) {
			set_err(err, first_err);
			return -1;
		}
		return 0;
	} catch (const std::exception &e) {
		set_err(err, e.what());
	}
	return -1;
}

int hnsw_mark_deleted(hnsw_index h, size_t label, char **err) {
	try {
		static_cast<Index *>(h)->alg->markDelete(label);
		return 0;
	} catch (const std::exception &e) {
		set_err(err, e.what());
	}
	return -1;
}

int hnsw_search(hnsw_index h, const float *q, size_t k, size_t *labels, float *dists, size_t *found, char **err) {
	try {
		auto res = static_cast<Index *>(h)->alg->searchKnn(q, k);
		size_t n = res.size();
		*found = n;
		// The priority queue pops the farthest first.
		for (size_t i = n; i > 0; i--) {
			labels[i - 1] = res.top().second;
			dists[i - 1] = res.top().first;
			res.pop();
		}
		return 0;
	} catch (const std::exception &e) {
		set_err(err, e.what());
	}
	return -1;
}

void hnsw_set_ef(hnsw_index h, size_t ef) { static_cast<Index *>(h)->alg->setEf(ef); }

size_t hnsw_count(hnsw_index h) { return static_cast<Index *>(h)->alg->cur_element_count; }

size_t hnsw_capacity(hnsw_index h) { return static_cast<Index *>(h)->alg->max_elements_; }

void hnsw_free(hnsw_index h) { delete static_cast<Index *>(h); }

}  // extern "C"
