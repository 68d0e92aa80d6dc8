"""Vector indexes: specs, backends (FAISS, Milvus), artifacts and the Recommender built from one."""
