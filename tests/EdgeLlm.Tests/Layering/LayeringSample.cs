// Types that break a two-layer rule (Low below High) on purpose, one way each, for LayeringTests: the checker must
// name every one of them and nothing else.
using EdgeLlm.Tests.Layering.Sample.Low;

namespace EdgeLlm.Tests.Layering.Sample.High
{
    public class Widget
    {
        public static int Count() => 1;
        public Base Anchor = new(); // the high layer may use the low one
    }

    public class Derivable : Base;
}

namespace EdgeLlm.Tests.Layering.Sample.Low
{
    using EdgeLlm.Tests.Layering.Sample.High;

    public class Base;

    public class Clean
    {
        public Base? Other;
        public override string ToString() => new Base().ToString()!;
    }

    public class FieldUser { public Widget? W; }

    public class SignatureUser { public static void Take(Widget w) => GC.KeepAlive(w); }

    public class BodyUser { public override string ToString() => new Widget().ToString()!; }

    public class StaticCallUser { public override int GetHashCode() => Widget.Count(); }

    public class GenericUser { public override int GetHashCode() => new List<Widget>().Count; }

    public class TypeofUser { public override string ToString() => typeof(Widget).Name; }

    public class BaseUser : Derivable;

    public class LambdaUser
    {
        public Func<int> F = () => Widget.Count(); // the body lives in a nested compiler-generated class
    }
}
