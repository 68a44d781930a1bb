using System.Collections.Concurrent;

namespace SharpVhost.Devices.Net.Endpoints;

/// <summary>
/// A learning Ethernet switch between the ports of one process: each port is a vhost-user socket
/// with a guest behind it. A frame's source address is learned on the port it came from; frames to a
/// learned address go to that port only, broadcast, multicast and unknown destinations go to every
/// other port. Learned addresses expire after <see cref="AgeingTime"/> without traffic from them.
/// Forwarding copies each frame once into the destination port's backlog; a full backlog drops the
/// frame for that port alone.
/// </summary>
public sealed class NetSwitch
{
    /// <summary>Bounds the table against a guest that sends from endless made-up addresses.</summary>
    public const int DefaultMaxAddresses = 4096;

    private readonly ConcurrentDictionary<MacAddress, MacEntry> _table = new();
    private readonly TimeProvider _time;
    private readonly long _ageingTicks;
    private readonly object _portsLock = new();
    private SwitchPort[] _ports = [];
    private long _tableFull;

    public TimeSpan AgeingTime { get; }
    public int MaxAddresses { get; }
    public IReadOnlyList<SwitchPort> Ports => Volatile.Read(ref _ports);
    public int AddressCount => _table.Count;
    /// <summary>Source addresses not learned because the table was full.</summary>
    public long TableFull => Interlocked.Read(ref _tableFull);

    public NetSwitch(TimeSpan? ageingTime = null, TimeProvider? time = null, int maxAddresses = DefaultMaxAddresses)
    {
        AgeingTime = ageingTime ?? TimeSpan.FromSeconds(300);
        _time = time ?? TimeProvider.System;
        _ageingTicks = (long)(AgeingTime.TotalSeconds * _time.TimestampFrequency);
        MaxAddresses = maxAddresses;
    }

    /// <summary>A new port; give it to a <see cref="NetDevice"/> as its endpoint.</summary>
    public SwitchPort AddPort(string name)
    {
        lock (_portsLock)
        {
            var port = new SwitchPort(this, name, _ports.Length);
            Volatile.Write(ref _ports, [.. _ports, port]);
            return port;
        }
    }

    /// <summary>The port <paramref name="mac"/> was last seen on, if it has not aged out.</summary>
    public SwitchPort? Lookup(MacAddress mac)
    {
        if (!_table.TryGetValue(mac, out var entry)) return null;
        return IsFresh(entry, _time.GetTimestamp()) ? entry.Port : null;
    }

    /// <summary>Forgets every address that aged out; returns how many.</summary>
    public int Sweep()
    {
        long now = _time.GetTimestamp();
        int removed = 0;
        foreach (var (mac, entry) in _table)
            if (!IsFresh(entry, now) && _table.TryRemove(new KeyValuePair<MacAddress, MacEntry>(mac, entry))) removed++;
        return removed;
    }

    private bool IsFresh(MacEntry entry, long now) => now - Volatile.Read(ref entry.LastSeen) <= _ageingTicks;

    internal void Forward(SwitchPort ingress, in TxFrame frame)
    {
        var (destination, source) = frame.ReadAddresses();
        long now = _time.GetTimestamp();
        if (!source.IsMulticast) Learn(source, ingress, now);
        if (!destination.IsMulticast && _table.TryGetValue(destination, out var entry) && IsFresh(entry, now))
        {
            var egress = entry.Port;
            if (egress == ingress)
            {
                // The destination lives behind the port the frame came from: nothing to do.
                Interlocked.Increment(ref ingress.Filtered);
                return;
            }
            Interlocked.Increment(ref ingress.Unicast);
            egress.Deliver(frame, destination, source);
            return;
        }
        Interlocked.Increment(ref ingress.Flooded);
        foreach (var port in Volatile.Read(ref _ports))
            if (port != ingress) port.Deliver(frame, destination, source);
    }

    private void Learn(MacAddress source, SwitchPort port, long now)
    {
        if (_table.TryGetValue(source, out var entry))
        {
            // Updated in place: learning an address we already know allocates nothing.
            if (entry.Port != port) { entry.Port = port; Interlocked.Increment(ref port.Learned); }
            Volatile.Write(ref entry.LastSeen, now);
            return;
        }
        if (_table.Count >= MaxAddresses && Sweep() == 0)
        {
            Interlocked.Increment(ref _tableFull);
            return;
        }
        if (_table.TryAdd(source, new MacEntry { Port = port, LastSeen = now })) Interlocked.Increment(ref port.Learned);
    }

    private sealed class MacEntry
    {
        public volatile SwitchPort Port = null!;
        public long LastSeen;
    }
}
