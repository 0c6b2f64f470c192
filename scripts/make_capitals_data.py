#!/usr/bin/env python3
"""Writes data/smollm2_capitals/{train,val}.jsonl: the bundled chat task of scripts/demo_smollm2.sh.

Each record asks for a country's capital, in one of several phrasings, and the answer always has one fixed form,
"Capital: CITY (COUNTRY)". A pretrained chat model knows many capitals but answers in sentences of its own, so
it scores near 0 by exact match before fine-tuning; it must learn the format from the training countries and
apply it, with its own knowledge, to the held-out ones. Countries are split, not questions: no validation
country appears in training.

    python3 scripts/make_capitals_data.py
"""
import json
import os
import random

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CAPITALS = [
    ("France", "Paris"), ("Germany", "Berlin"), ("Italy", "Rome"), ("Spain", "Madrid"), ("Portugal", "Lisbon"),
    ("Japan", "Tokyo"), ("China", "Beijing"), ("Russia", "Moscow"), ("Egypt", "Cairo"), ("Greece", "Athens"),
    ("Austria", "Vienna"), ("Hungary", "Budapest"), ("Poland", "Warsaw"), ("Ireland", "Dublin"),
    ("Norway", "Oslo"), ("Sweden", "Stockholm"), ("Finland", "Helsinki"), ("Denmark", "Copenhagen"),
    ("Belgium", "Brussels"), ("Netherlands", "Amsterdam"), ("Switzerland", "Bern"), ("Czechia", "Prague"),
    ("Turkey", "Ankara"), ("India", "New Delhi"), ("Thailand", "Bangkok"), ("Vietnam", "Hanoi"),
    ("South Korea", "Seoul"), ("Indonesia", "Jakarta"), ("Philippines", "Manila"), ("Malaysia", "Kuala Lumpur"),
    ("Kenya", "Nairobi"), ("Nigeria", "Abuja"), ("Ghana", "Accra"), ("Ethiopia", "Addis Ababa"),
    ("Morocco", "Rabat"), ("Argentina", "Buenos Aires"), ("Chile", "Santiago"), ("Peru", "Lima"),
    ("Colombia", "Bogota"), ("Venezuela", "Caracas"), ("Mexico", "Mexico City"), ("Canada", "Ottawa"),
    ("United States", "Washington"), ("Cuba", "Havana"), ("Australia", "Canberra"), ("New Zealand", "Wellington"),
    ("United Kingdom", "London"), ("Iceland", "Reykjavik"), ("Ukraine", "Kyiv"), ("Romania", "Bucharest"),
    ("Bulgaria", "Sofia"), ("Serbia", "Belgrade"), ("Croatia", "Zagreb"), ("Slovakia", "Bratislava"),
    ("Iran", "Tehran"), ("Iraq", "Baghdad"), ("Saudi Arabia", "Riyadh"), ("Israel", "Jerusalem"),
    ("Pakistan", "Islamabad"), ("Afghanistan", "Kabul"), ("Nepal", "Kathmandu"), ("Bangladesh", "Dhaka"),
    ("Sri Lanka", "Colombo"), ("Mongolia", "Ulaanbaatar"), ("Syria", "Damascus"), ("Lebanon", "Beirut"),
    ("Jordan", "Amman"), ("Qatar", "Doha"), ("Kuwait", "Kuwait City"), ("Singapore", "Singapore"),
    ("Brazil", "Brasilia"), ("Uruguay", "Montevideo"), ("Paraguay", "Asuncion"), ("Bolivia", "La Paz"),
    ("Ecuador", "Quito"), ("Jamaica", "Kingston"), ("Panama", "Panama City"), ("Senegal", "Dakar"),
    ("Tanzania", "Dodoma"), ("Uganda", "Kampala"), ("Zimbabwe", "Harare"), ("Algeria", "Algiers"),
    ("Tunisia", "Tunis"), ("Libya", "Tripoli"), ("Sudan", "Khartoum"), ("Angola", "Luanda"),
    ("Estonia", "Tallinn"), ("Latvia", "Riga"), ("Lithuania", "Vilnius"), ("Belarus", "Minsk"),
    ("Georgia", "Tbilisi"), ("Armenia", "Yerevan"), ("Azerbaijan", "Baku"), ("Kazakhstan", "Astana"),
    ("Uzbekistan", "Tashkent"), ("Cambodia", "Phnom Penh"), ("Laos", "Vientiane"), ("Myanmar", "Naypyidaw"),
]

QUESTIONS = [
    "What is the capital of {c}?",
    "Which city is the capital of {c}?",
    "Name the capital city of {c}.",
    "{c}: what is its capital?",
    "Tell me the capital of {c}.",
]


def main():
    rng = random.Random(2026)
    pairs = CAPITALS[:]
    rng.shuffle(pairs)
    val, train = pairs[:30], pairs[30:]
    out = os.path.join(ROOT, "data", "smollm2_capitals")
    os.makedirs(out, exist_ok=True)

    def record(country, city, question):
        return {"messages": [{"role": "user", "content": question.format(c=country)},
                             {"role": "assistant", "content": f"Capital: {city} ({country})"}]}

    with open(os.path.join(out, "train.jsonl"), "w") as f:
        for country, city in train:
            for q in QUESTIONS:
                f.write(json.dumps(record(country, city, q)) + "\n")
    with open(os.path.join(out, "val.jsonl"), "w") as f:
        for country, city in val:
            f.write(json.dumps(record(country, city, rng.choice(QUESTIONS))) + "\n")
    print(f"wrote {out}: {len(train) * len(QUESTIONS)} training records, {len(val)} held-out countries")


if __name__ == "__main__":
    main()
