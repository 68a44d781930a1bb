using SharpVhost.Bench;

return BenchCommand.Create().Parse(args).Invoke();
