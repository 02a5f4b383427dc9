"""Beauty and Sports in one S3-Rec file: a real catalogue above 20,000 items.

    python benchmarks/beauty_sports.py ../shared/data runs/data/Beauty_Sports.txt

Beauty's lines as they are, then Sports' lines with every user id offset past
Beauty's largest user id and every item id past Beauty's largest item id, so the
two catalogues and user bases never share an id: 57,961 users, 30,458 items.
Each user's sequence keeps its order, so the S3-Rec leave-one-out protocol
applies unchanged.
"""
import os
import sys


def read(path):
    with open(path) as f:
        return [[int(x) for x in line.split()] for line in f if line.strip()]


def main(shared: str, out: str) -> None:
    beauty = read(os.path.join(shared, "beauty", "Beauty.txt"))
    sports = read(os.path.join(shared, "sports", "Sports_and_Outdoors.txt"))
    user_off = max(row[0] for row in beauty)
    item_off = max(max(row[1:]) for row in beauty)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out + ".tmp", "w") as f:
        for row in beauty:
            f.write(" ".join(map(str, row)) + "\n")
        for row in sports:
            f.write(" ".join(map(str, [row[0] + user_off] + [i + item_off for i in row[1:]])) + "\n")
    os.replace(out + ".tmp", out)
    items = {i for row in beauty for i in row[1:]} | {i + item_off for row in sports for i in row[1:]}
    print(f"wrote {out}: {len(beauty) + len(sports):,} users, {len(items):,} items")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
