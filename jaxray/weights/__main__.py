"""Converts a downloaded weight file into the cache, for machines without internet access.

  python -m jaxray.weights convert --source=torchvision_resnet18 --file=/path/to/resnet18-f37072fd.pth
  python -m jaxray.weights list

After `convert`, runs with model.pretrained.source=<source> find the weights without a path.
"""

import argparse
import sys

from jaxray.weights import hub


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog="python -m jaxray.weights", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  commands = parser.add_subparsers(dest="command", required=True)
  convert = commands.add_parser("convert", help="convert an original weight file into the cache")
  convert.add_argument("--source", required=True, choices=sorted(hub.SOURCES))
  convert.add_argument("--file", required=True, help="the .pth / .h5 file as downloaded")
  commands.add_parser("list", help="show the sources, their URLs and the cache")
  args = parser.parse_args(argv)

  if args.command == "list":
    print(f"cache: {hub.cache_dir()}  (set $JAXRAY_CACHE to move it)")
    for source in hub.SOURCES.values():
      files = [source.top] + ([source.notop] if source.notop else [])
      print(f"{source.name} (model.name={source.model_name})")
      for f in files:
        print(f"  {f.url}")
    return 0

  source = hub.get_source(args.source)
  try:
    target, weights = hub.convert_and_cache(source, args.file)
  except (ValueError, OSError) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  top = "with" if weights.has_top else "without"
  print(f"Converted {args.file} ({len(weights.arrays)} arrays, {top} the ImageNet top) -> {target}")
  print(f"Use it with --set model.pretrained.source={source.name}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
