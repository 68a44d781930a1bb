namespace SharpVhost.Bench.Report;

/// <summary>Collects per-repetition samples of (case, metric) for both sides and turns them into rows of medians.</summary>
public sealed class RowBuilder(string peer)
{
    private sealed record Key(string Case, string Metric, string Unit, Better Better, double? Target);
    private readonly Dictionary<Key, (List<double> Ours, List<double> Peer)> _samples = [];
    private readonly List<Key> _order = [];

    public void Add(string @case, string metric, string unit, Better better, double? target, double? ours, double? peerValue)
    {
        var key = new Key(@case, metric, unit, better, target);
        if (!_samples.TryGetValue(key, out var lists))
        {
            _samples[key] = lists = ([], []);
            _order.Add(key);
        }
        if (ours is { } o) lists.Ours.Add(o);
        if (peerValue is { } p) lists.Peer.Add(p);
    }

    public void AddTo(ComparisonResult result)
    {
        foreach (var key in _order)
        {
            var (ours, peerValues) = _samples[key];
            result.Rows.Add(new ResultRow
            {
                Case = key.Case, Metric = key.Metric, Unit = key.Unit, Peer = peer, Better = key.Better, Target = key.Target,
                Ours = Stats.Median(ours), PeerValue = Stats.Median(peerValues), Repetitions = Math.Min(ours.Count, peerValues.Count),
                OursSamples = [.. ours], PeerSamples = [.. peerValues],
            });
        }
    }
}
