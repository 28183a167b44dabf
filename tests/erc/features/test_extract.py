"""erc.features.extract: length buckets bound the padded size of a batch."""

from erc.features import length_buckets


def test_length_buckets_bound_padded_size_and_cover_everything():
    lengths = [5, 70, 12, 33, 33, 1, 64, 8, 100]
    batches = length_buckets(lengths, 100)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        longest = max(lengths[i] for i in batch)
        assert lengths[batch[0]] == longest
        assert len(batch) * longest <= 100 or len(batch) == 1
    flat = [lengths[i] for b in batches for i in b]
    assert flat == sorted(flat, reverse=True)  # similar lengths share a batch
